r"""The host ops moved onto the chip, in Lava's fixed point: residual adds and RMSNorm.

When ``move_host_ops`` puts a Residual or an RMSNorm on a Loihi 2 chip (the profile's
``[capabilities]``), the chip computes it with Lava's graded neurons, in integers
(lava-nc 0.10.0, ``src/lava/proc/graded/``):

- ``GradedVec`` (``models.py PyGradedVecModelFixed``, ``AbstractGradedVecModel.run_spk``):
  ``v = a_in``; ``s_out = v * (|v| > vth)``; 24-bit (``precision=24``). Its ``exp`` ("fixed
  point base", ``process.py``) is held but not used by the model: the scale is the
  network's, chosen by stac.
- ``NormVecDelay`` (``models.py NormVecDelayModel.run_spk``): ``s2_out = a_in1 ** 2``, and two
  steps later ``s_out = v[t-2] * a_in2`` (thresholded by ``vth``), 24-bit.
- ``InvSqrt`` (``models.py InvSqrtModelFP.run_spk``, ``inv_sqrt``, ``make_fpinv_table``,
  ``clz``): a table start and 5 Newton steps in fixed point with 12 fraction bits; the model
  calls ``inv_sqrt(a_in, 5)`` with the default ``b_fraction=12`` (its ``fp_base`` is unused),
  and answers 0 for an all-zero input.

:func:`graded_vec`, :func:`norm_square`, :func:`norm_product` and :func:`inv_sqrt` are those
integer functions (``torch.int64``, inputs in range: |a| <= 2**23 - 1; squares and products
in range by the scales below); ``tests/test_graded_fixed.py`` checks them against Lava's
PyProcModels bit for bit.

stac's design choices (not Lava's): a value ``x`` is the integer ``round(x * 2**e)`` (Lava's
``loihi2round``, ``process.py``), saturated to the state width (the profile's
``[fixed_point] state_bits``); the exponent ``e`` of each moved op is chosen from its
calibrated range (:func:`choose_scales`) with a headroom factor ``HEADROOM``; ``vth = 0``
(every nonzero value is sent). For RMSNorm the square must fit the width, so
``|a| <= sqrt(2**23 - 1)`` (2,896); the sum of squares over the vector reaches the InvSqrt
neuron right-shifted by ``k`` bits (a Dense of ones with ``weight_exp = -k``), plus eps as a
bias in that scale; ``k`` keeps the sum within the width and the product ``a * inv`` within it
(``k <= 2 (state_bits - 1) - 3 * 12 - 1``) and puts the calibrated largest sum near
``2**SUM_BITS``, where Lava's InvSqrt is most accurate. The mean's ``1/d``, the ``2**(k/2)`` and the
output scale fold into the per-channel weight's diagonal Dense, which stays float here (as the
artifact's other float scales do).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from stac.errors import StacError

Tensor = torch.Tensor

#: lava-nc 0.10.0 src/lava/proc/graded/models.py: ``inv_sqrt(s_fp, n_iters=5, b_fraction=12)``,
#: called by ``InvSqrtModelFP.run_spk`` as ``inv_sqrt(a_in_data, 5)``.
INV_SQRT_FRACTION = 12
INV_SQRT_ITERS = 5
#: models.py ``make_fpinv_table``: ``n_bits = 24`` entries, ``n_adj = 1.238982962``.
_TABLE_BITS = 24
_N_ADJ = 1.238982962
#: stac design choice: the calibrated range times this must fit the width.
HEADROOM = 2.0
#: stac design choice: the calibrated largest sum of squares reaches InvSqrt as about
#: 2**SUM_BITS. Lava's inv_sqrt answers an integer near 2**18 / sqrt(s): measured over
#: s in [2**14, 2**16) its relative error is at most 0.23 %, growing to 2.8 % near 2**24
#: (a small integer) and, with the shift's truncation, for small s; smaller tokens' sums
#: land below, where it stays near 1e-3 down to s = 2**6.
SUM_BITS = 15


def loihi2_round(x: Tensor) -> Tensor:
    """Lava's ``loihi2round`` (``process.py``): ``fix(x + (x > 0) - 0.5)``, to int64."""
    return torch.trunc(x + (x > 0).to(x.dtype) - 0.5).to(torch.int64)


def graded_vec(a_in: Tensor, vth: int = 0) -> Tensor:
    """One step of ``PyGradedVecModelFixed``: ``v = a_in``, ``s_out = v * (|v| > vth)``."""
    return a_in * (a_in.abs() > vth)


def norm_square(a_in1: Tensor) -> Tensor:
    """``NormVecDelayModel``'s second output: ``a_in1 ** 2``."""
    return a_in1 * a_in1


def norm_product(v: Tensor, a_in2: Tensor, vth: int = 0) -> Tensor:
    """``NormVecDelayModel``'s first output: ``out = v[t-2] * a_in2``, sent where
    ``|out| > vth``."""
    out = v * a_in2
    return out * (out.abs() > vth)


def _table(fraction: int) -> list[int]:
    base = 2**fraction
    table = [0] * _TABLE_BITS
    for m in range(_TABLE_BITS):
        table[_TABLE_BITS - m - 1] = 2 * int(base / (2 ** ((m - fraction) / 2) * _N_ADJ))
    return table


def inv_sqrt(s: Tensor, iters: int = INV_SQRT_ITERS, fraction: int = INV_SQRT_FRACTION) -> Tensor:
    """``InvSqrtModelFP``'s ``inv_sqrt`` elementwise on int64 ``s`` in ``[0, 2**24)``: about
    ``2**fraction / sqrt(s / 2**fraction)``; 0 where ``s`` is 0 (the model's all-zero case)."""
    if bool((s < 0).any()) or bool((s >= 2**_TABLE_BITS).any()):
        raise StacError(f"inv_sqrt: input outside [0, 2**{_TABLE_BITS}) (Lava's table range)")
    s = s.to(torch.int64)
    zero = s == 0
    safe = torch.where(zero, torch.ones_like(s), s)
    # clz: 24 - (floor(log2 s) + 1); floor(log2 s) is the bit length - 1 for 1 <= s < 2**24
    bits = torch.floor(torch.log2(safe.to(torch.float64))).to(torch.int64)
    m = _TABLE_BITS - (bits + 1)
    table = torch.tensor(_table(fraction), dtype=torch.int64)
    big = table[m]
    b = safe.clone()
    y = big // 2
    for _ in range(iters):
        b = ((b * big) >> (fraction + 1)) * big >> (fraction + 1)
        big = (3 << fraction) - b
        y = (y * big) >> (fraction + 1)
    return torch.where(zero, torch.zeros_like(y), y)


# --- scales chosen by stac from calibrated ranges ----------------------------------------------


@dataclass(frozen=True)
class ResidualScale:
    """A moved Residual: value = integer * 2**-exp."""

    exp: int
    amax: float  # calibrated max |value| (per step)


@dataclass(frozen=True)
class NormScale:
    """A moved RMSNorm: input integer a = round(x * 2**exp), |a| <= sqrt(max); the sum of
    squares reaches InvSqrt as (sum a**2) >> shift, plus eps_int."""

    exp: int
    shift: int
    eps_int: int
    amax: float  # calibrated max |x|
    sq_max: float  # calibrated max sum of x**2 over the vector


def _max_int(width: int) -> int:
    return 2 ** (width - 1) - 1


def residual_scale(amax: float, width: int) -> ResidualScale:
    """The largest exponent with ``HEADROOM * amax * 2**exp`` within the width."""
    if not math.isfinite(amax) or amax <= 0:
        return ResidualScale(0, amax)
    return ResidualScale(math.floor(math.log2(_max_int(width) / (HEADROOM * amax))), amax)


def norm_scale(amax: float, sq_max: float, size: int, eps: float, width: int) -> NormScale:
    """Exponent and InvSqrt shift for an RMSNorm of ``size`` values (see the module doc)."""
    top = _max_int(width)
    a_top = math.isqrt(top)  # the square must fit the width
    k_max = 2 * (width - 1) - 3 * INV_SQRT_FRACTION - 1  # a * inv within the width
    if not (math.isfinite(amax) and amax > 0 and math.isfinite(sq_max) and sq_max > 0):
        return NormScale(0, 0, 0, amax, sq_max)
    exp = math.floor(math.log2(a_top / (HEADROOM * amax)))
    # the sum of squares, shifted by at most k_max, must fit: lower exp if it would not
    while exp > -64 and HEADROOM * sq_max * 4.0**exp > top * 2.0**k_max:
        exp -= 1
    # the calibrated largest sum lands at 2**SUM_BITS, where InvSqrt is accurate (module doc)
    shift = min(k_max, max(0, math.ceil(math.log2(sq_max * 4.0**exp) - SUM_BITS)))
    eps_int = round(eps * size * 4.0**exp / 2.0**shift)
    return NormScale(exp, shift, eps_int, amax, sq_max)


def quantise(x: Tensor, exp: int, limit: int) -> Tensor:
    """``loihi2round(x * 2**exp)`` saturated to ``[-limit, limit]``."""
    return loihi2_round(x.to(torch.float64) * 2.0**exp).clamp(-limit, limit)


def residual_fixed(x: Tensor, scale: ResidualScale, width: int) -> Tensor:
    """A GradedVec carrying ``x``: quantise, one ``graded_vec`` step (vth 0), back to float."""
    a = graded_vec(quantise(x, scale.exp, _max_int(width)))
    return (a.to(torch.float64) * 2.0**-scale.exp).to(x.dtype)


def rms_norm_fixed(x: Tensor, weight: Tensor, scale: NormScale, width: int) -> Tensor:
    """NormVecDelay + InvSqrt on ``x [..., d]``, then the per-channel weight (float)."""
    top = _max_int(width)
    a = quantise(x, scale.exp, math.isqrt(top))
    s = (norm_square(a).sum(-1, keepdim=True) >> scale.shift) + scale.eps_int
    inv = inv_sqrt(s.clamp(0, top))
    out = norm_product(a, inv).clamp(-top, top)
    d = x.shape[-1]
    gain = math.sqrt(d) * 2.0 ** -(1.5 * INV_SQRT_FRACTION + 0.5 * scale.shift)
    return (out.to(torch.float64) * gain).to(x.dtype) * weight


def scales_doc(scales: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The chosen scales as JSON: node -> its fields and kind."""
    return {n: {"kind": type(s).__name__, **asdict(s)} for n, s in sorted(scales.items())}


__all__ = [
    "HEADROOM",
    "SUM_BITS",
    "INV_SQRT_FRACTION",
    "INV_SQRT_ITERS",
    "NormScale",
    "ResidualScale",
    "graded_vec",
    "inv_sqrt",
    "loihi2_round",
    "norm_product",
    "norm_scale",
    "norm_square",
    "quantise",
    "residual_fixed",
    "residual_scale",
    "rms_norm_fixed",
    "scales_doc",
]
