"""How lava-dl's netx fits a dense layer's integer weights into Loihi's synapse.

netx (lava-dl 0.6.0, ``netx.utils.optimize_weight_bits``) does not load a dense weight matrix
as stored: it shifts it left by ``scale_bits`` so that the largest weight fills the synapse's
range, gives the Dense process ``weight_exp = -scale_bits`` (the accumulation is shifted back
right) and ``num_weight_bits``, the precision the matrix needs; Lava's fixed-point Dense
(``clip_weights``, ``truncate_weights`` in lava-nc ``src/lava/utils/weightutils.py``) then clips
the shifted weights to the synapse's range and clears their low bits. For most matrices
nothing is lost and the layer computes ``W @ s`` exactly; :func:`netx_weight_fit` computes the
two numbers and says when something would be lost (then the layer is refused: Lava would run
other weights than the file's).

The rule, for ``b``-bit synapses (``chip.weight_bits``): netx's sign mode is *inhibitory*
when every weight is negative, *excitatory* when none is, else *mixed*; its scale is
``(2**(b-1) - 1) / max`` and ``2**(b-1) / -min`` (the smaller) for mixed, ``2**b / -min``
for inhibitory, ``(2**b - 1) / max`` for excitatory; ``scale_bits = floor(log2 scale)``
(+1 when mixed); with ``n`` the largest count of trailing zero bits all weights share
(0..b), less one when mixed, ``num_weight_bits = b - scale_bits - n``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


class WeightFit(NamedTuple):
    scale_bits: int  # netx shifts the weights left by this; weight_exp = -scale_bits
    num_weight_bits: int  # the precision Lava's Dense keeps
    problem: str | None  # why Lava would run other weights than these, or None


def _trailing_zero_bits(w: np.ndarray, most: int) -> int:
    """The largest n <= most such that every weight is a multiple of 2**n."""
    for n in range(most, 0, -1):
        if not np.any(w % (1 << n)):
            return n
    return 0


def netx_weight_fit(w: np.ndarray, bits: int) -> WeightFit:
    """netx's ``scale_bits`` and ``num_weight_bits`` for integer weights ``w`` on ``bits``-bit
    synapses, and whether Lava's Dense keeps ``w << scale_bits`` exactly."""
    w = np.asarray(w, dtype=np.int64)
    if w.size == 0 or not np.any(w):
        return WeightFit(0, bits, None)
    hi, lo = int(w.max()), int(w.min())
    half, full = 1 << (bits - 1), 1 << bits
    if (hi > full - 2 and lo < 0) or (lo < -full and hi > 0):
        return WeightFit(
            0,
            bits,
            f"weights span [{lo}, {hi}], beyond the [{-full}, {full - 2}] "
            "netx clips a mixed-sign matrix to",
        )
    mixed = lo < 0 <= hi
    if mixed:
        scale = min((half - 1) / hi if hi > 0 else math.inf, half / -lo)
    elif hi < 0:
        scale = full / -lo
    else:
        scale = (full - 1) / hi
    scale_bits = math.floor(math.log2(scale)) + int(mixed)
    if scale_bits < 0:
        return WeightFit(
            scale_bits, bits, f"weights up to {max(hi, -lo)} do not fit netx's {bits}-bit synapse"
        )
    n = _trailing_zero_bits(w, bits) - int(mixed)
    nwb = bits - scale_bits - n
    return WeightFit(scale_bits, nwb, _lava_loss(w << scale_bits, nwb, bits, scale_bits))


def _lava_loss(shifted: np.ndarray, nwb: int, bits: int, scale_bits: int) -> str | None:
    """What Lava's Dense would change in ``shifted`` (clip to the sign mode's range, clear the
    low ``bits - nwb`` bits, one more when mixed), or None."""
    if not 0 < nwb <= bits:
        return f"netx gives them {nwb} weight bits, outside Lava's 1..{bits}"
    sign = -1 if shifted.max() <= 0 and shifted.min() < 0 else 1
    mixed = shifted.min() < 0 < shifted.max()
    mag = shifted * sign
    kept = np.clip(mag, -(1 << bits) if mixed else 0, (1 << bits) - 1)
    cut = bits - nwb + int(mixed)
    kept = (kept >> cut) << cut
    changed = int(np.count_nonzero(kept != mag))
    if changed:
        return (
            f"Lava's Dense would clip or truncate {changed} of them after netx shifts "
            f"them left by {scale_bits} bits"
        )
    return None


__all__ = ["WeightFit", "netx_weight_fit"]
