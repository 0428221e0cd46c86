"""Symmetric integer quantisation of weights, shared by full-mode conversion and the passes."""

from __future__ import annotations

import numpy as np


def quantise_weight(
    weight: np.ndarray, bits: int, per_channel: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Round ``weight`` ``[out, in]`` to signed ``bits``-bit integers with a scale per row.

    Returns ``(q, scale)`` with ``q`` int32 in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]`` and
    ``scale`` float32 of shape ``(out,)`` (all equal when ``per_channel`` is False), so that
    ``q * scale[:, None]`` is the quantised weight. The largest magnitude of each row (or of
    the tensor) maps to the largest integer; an all-zero row gets scale 1.
    """
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D [out, in], got shape {weight.shape}")
    if not 2 <= bits <= 32:
        raise ValueError(f"bits must be in 2..32, got {bits}")
    w = np.asarray(weight, dtype=np.float64)
    qmax = 2 ** (bits - 1) - 1
    peak = np.abs(w).max(axis=1) if per_channel else np.full(w.shape[0], np.abs(w).max())
    scale = np.where(peak > 0, peak / qmax, 1.0)
    q = np.clip(np.rint(w / scale[:, None]), -qmax, qmax).astype(np.int32)
    return q, scale.astype(np.float32)


def dequantise(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The float32 weight that ``(q, scale)`` stands for."""
    return (q.astype(np.float64) * scale.astype(np.float64)[:, None]).astype(np.float32)
