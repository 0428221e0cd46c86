"""Host glue of a converted block: the integer drive the host sends, the values it reads back.

The arithmetic (onset and held drives, payload multipliers, the decode of the readouts) is
described in :mod:`stac.backends.lava.blocks`; the encoder's first step uses the reference
neuron's own float rule (:func:`stac.sim.neurons.onset_level`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from stac.backends.lava.blocks import BlockTrace, DenseBlock, EncoderBlock, readout_key
from stac.sim import fixed_point as fx
from stac.sim.neurons import onset_level, token_gain


@dataclass
class Drive:
    """A block's integer input for a run: ``[tokens * T + 1, n]`` per step, and the gains."""

    steps: np.ndarray  # [S, n] int64, what the host sends each step
    gain: np.ndarray  # [tokens] float32 (ones without token_gain)
    saturated: int  # held drive values clipped to the potential's range


def encode_drive(block: EncoderBlock, x: Any, steps: int, fmt: fx.LoihiFormat) -> Drive:
    """The host's integer drive for per-token float drives ``x`` ``[tokens, n]`` (the encoder's
    accumulated input, as the reference simulator feeds it), in float32 as the simulator
    computes it.

    Onset drive: the reference neuron receives ``T x`` at once and emits
    ``s_t = clamp(n - S_{t-1}, -K, K)`` with ``n = floor(T x / theta + 1/2)`` and ``S`` the
    payloads so far. The chip's potential holds ``v_max = 2**(state_bits-1) - 1``, so the host
    sends ``clamp(n, +-v_max)`` at the first step and the rest at up to K per step after it.
    Since ``v_max >= K``, the potential never falls below K while the reference would still
    emit K, so every payload equals the reference's, for any n, and ``v`` never saturates.

    Held drive: ``round(x 2**b / (g theta))`` every step; values beyond the potential are
    clipped and counted (the neuron then fires at every step either way)."""
    x = np.asarray(x, dtype=np.float32)
    tokens, n = x.shape
    theta = block.threshold
    gain = np.ones(tokens, np.float32)
    if block.token_gain:
        gain = token_gain(
            torch.from_numpy(x), torch.from_numpy(theta), block.gain_ratio, block.gain_floor
        )[..., 0].numpy()
    scaled = theta[None, :] * gain[:, None]
    top = fmt.uv_max - 1
    out = np.zeros((tokens * steps + 1, n), np.int64)
    if block.onset:  # the reference's first step: floor(T x / theta + 1/2), T x in float32
        d = onset_level(torch.from_numpy(x), torch.from_numpy(scaled), steps).double().numpy()
        rest = np.clip(d, -(2.0**62), 2.0**62).astype(np.int64)
        # More than the potential holds arrives over the next steps at K per step, as fast as
        # the neuron drains it: every step's payload is the reference's (see the docstring).
        for t in range(steps):
            sent = np.clip(
                rest, -(top if t == 0 else block.max_payload), top if t == 0 else block.max_payload
            )
            out[t : tokens * steps : steps] = sent
            rest = rest - sent
        sat = 0
    else:
        d = np.rint(x.astype(np.float64) * block.chip_theta / scaled.astype(np.float64))
        sat = int(np.count_nonzero(np.abs(d) > top))
        out[: tokens * steps] = np.repeat(np.clip(d, -top, top).astype(np.int64), steps, axis=0)
    return Drive(out, gain, sat)


def token_sums(sigma: np.ndarray, tokens: int, steps: int) -> np.ndarray:
    """Each token's accumulated Dense output from the readout's per-step values: the
    difference of the reads at its first and last steps (plus the one-step Dense delay),
    modulo 2**32 as Lava's int32 readout wraps."""
    reads = np.concatenate([np.zeros((1, sigma.shape[1]), np.int64), sigma[steps::steps]])
    return fx.wrap_signed(torch.as_tensor(reads[1 : tokens + 1] - reads[:tokens]), 32).numpy()


def decode(
    block: EncoderBlock,
    dense: DenseBlock,
    trace: BlockTrace,
    tokens: int,
    gain: np.ndarray,
    steps: int,
) -> np.ndarray:
    """The map's float output per token ``[tokens, out]`` from its readouts in ``trace``."""
    # The Dense halves its doubled weights with weight_exp = -1, so sums are in units of q.
    sums = sum(
        token_sums(trace.sigma[readout_key(dense.name, i, j)], tokens, steps).astype(np.float64)
        * (g.factor * 2.0 ** (j * block.split_bits))
        for i, g in enumerate(block.groups)
        for j in range(block.parts)
    )
    y = sums * dense.scale[None, :] * (gain[:, None] / steps)
    if dense.bias is not None:
        y = y + dense.bias[None, :]
    return y.astype(np.float32)


__all__ = ["Drive", "decode", "encode_drive", "token_sums"]
