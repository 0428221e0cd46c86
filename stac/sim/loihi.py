r"""Loihi's CUBA LIF neuron, Dense synapses and Sigma readout, bit-accurate as Lava computes them.

The steps follow Lava's bit-accurate process models (``Loihi2SimCfg(select_tag='fixed_pt')``:
``PyLifModelBitAcc`` in ``src/lava/proc/lif/models.py``, ``PyDenseModelBitAcc`` in
``src/lava/proc/dense/models.py``, ``PySigmaInt`` in ``src/lava/proc/sdn/models.py``)
operation by operation, including their rounding and overflow quirks, so that a cross-check
against Lava can hold bit for bit. The bit widths and shifts are data (:class:`LoihiFormat`,
read from a hardware profile), not constants in the code.

CUBA LIF, per timestep, with :math:`D = 2^{\text{decay\_bits}}` and
:math:`\operatorname{tz}(x) = \operatorname{sign}(x)\lfloor |x| / D \rfloor` (rounding toward
zero)::

    u <- tz(u * (D - (du + ds_offset))) + (a_in << shift)    then wrapped once into
                                                             (-2^(B-1), 2^(B-1)]
    v <- clip(tz(v * (D - (dv + dm_offset))) + u + bias,  -(2^(B-1) - 1), 2^(B-1) - 1)
    s  = v > (vth << shift);   v <- 0 where s

where B = ``state_bits``, shift = ``threshold_shift`` and bias = ``bias_mant << bias_exp``
(an arithmetic right shift when the exponent is negative). Note the asymmetries copied from
Lava: u wraps (``> 2^(B-1)`` becomes ``- 2^B``, so ``+2^(B-1)`` itself stays) while v
saturates; with Lava's ``ds_offset`` of 1, ``du = 0`` still decays u by 1/4096 per step and
``du = 4095`` clears it.

Dense, per timestep: the output is the accumulation of the *previous* step (a one-step
synaptic delay, which is what lets Lava run recurrent graphs), and the new accumulation is
``W @ s`` (``s`` binary, or an integer payload for graded spikes) shifted left by
``weight_exp`` (arithmetically right when negative), :func:`dense_accumulate`. Weights are
first clipped to ``weight_bits`` and their low bits truncated exactly as Lava does
(:func:`prepare_dense_weights`): mixed-sign weights lose their least significant bit, so they
are even. Lava's Dense output port is declared 16 bits but its Python model does not enforce
that width. One overflow rule holds for every integer model here: values are computed exactly
and the ones outside a width are counted (:func:`out_of_width`); :func:`dense_fixed_step`
refuses a count above zero unless ``strict=False`` (then it behaves as Lava's Python model:
32-bit wrap only).
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple, Sequence

import torch

from stac.errors import StacError
from stac.sim.fixed_point import (
    LoihiFormat,
    as_int,
    check_range,
    decay_toward_zero,
    shift,
    wrap_signed,
)

Tensor = torch.Tensor


# --- CUBA LIF ----------------------------------------------------------------------------------


class LIFFixedParams(NamedTuple):
    du: int  # current decay, du / 2**decay_bits per step (plus ds_offset)
    dv: int  # voltage decay, dv / 2**decay_bits per step (plus dm_offset)
    vth: Tensor  # unsigned threshold mantissa, scalar or per neuron
    bias_mant: Tensor  # signed bias mantissa per neuron
    bias_exp: Tensor  # bias exponent per neuron
    ds_offset: int  # added to du: Loihi's 1-bit register; Lava's PyLifModelBitAcc sets 1
    dm_offset: int  # added to dv; Lava sets 0


class LIFFixedState(NamedTuple):
    u: Tensor  # synaptic current, uv_bits two's complement
    v: Tensor  # membrane voltage, uv_bits, saturating


def lif_params(
    du: int,
    dv: int,
    vth: int | Tensor,
    bias_mant: int | Tensor = 0,
    bias_exp: int | Tensor = 0,
    ds_offset: int = 1,
    dm_offset: int = 0,
    fmt: LoihiFormat | None = None,
) -> LIFFixedParams:
    """Parameters, checked against ``fmt``'s ranges when given (each error names its field).

    The offsets default to what Lava's bit-accurate LIF uses (ds_offset 1, dm_offset 0).
    Without ``fmt`` any integers are taken, as Lava's Python model takes them.
    """
    p = LIFFixedParams(
        int(du),
        int(dv),
        as_int(vth),
        as_int(bias_mant),
        as_int(bias_exp),
        int(ds_offset),
        int(dm_offset),
    )
    if fmt is not None:
        check_range("LIF du", p.du, 0, (1 << fmt.decay_bits) - 1)
        check_range("LIF dv", p.dv, 0, (1 << fmt.decay_bits) - 1)
        check_range("LIF vth", p.vth, 0, (1 << fmt.threshold_bits) - 1)
        check_range("LIF ds_offset", p.ds_offset, 0, 1)
        check_range("LIF dm_offset", p.dm_offset, 0, 1)
        half = 1 << (fmt.bias_mantissa_bits - 1)
        check_range("LIF bias_mant", p.bias_mant, -half, half - 1)
        top = (1 << fmt.bias_exp_bits) - 1
        check_range("LIF bias_exp", p.bias_exp, -top, top)
    return p


def lif_initial_state(shape: Sequence[int]) -> LIFFixedState:
    zeros = torch.zeros(tuple(shape), dtype=torch.int64)
    return LIFFixedState(zeros, zeros.clone())


def lif_fixed_step(
    a_in: Tensor, state: LIFFixedState, params: LIFFixedParams, fmt: LoihiFormat
) -> tuple[Tensor, LIFFixedState]:
    """One timestep of Lava's ``PyLifModelBitAcc``; returns (spikes as bool, new state)."""
    unity = 1 << fmt.decay_bits
    top = fmt.uv_max
    activation = wrap_signed(as_int(a_in) << fmt.threshold_shift, 32)
    u = wrap_signed(
        decay_toward_zero(state.u, unity - (params.du + params.ds_offset), fmt.decay_bits)
        + activation,
        32,
    )
    # One wrap, as Lava's: values just past either end come back in range.
    u = torch.where(u > top, u - 2 * top, torch.where(u <= -top, u + 2 * top, u))
    bias = shift(params.bias_mant, params.bias_exp)
    v = decay_toward_zero(state.v, unity - (params.dv + params.dm_offset), fmt.decay_bits)
    v = wrap_signed(v + u + bias, 32).clamp(-top + 1, top - 1)
    spikes = v > (params.vth << fmt.threshold_shift)
    return spikes, LIFFixedState(u, torch.where(spikes, torch.zeros_like(v), v))


# --- Dense -------------------------------------------------------------------------------------


class SignMode(Enum):
    """Lava's weight sign modes (``lava.utils.weightutils.SignMode``)."""

    MIXED = 1
    EXCITATORY = 2
    INHIBITORY = 3


def sign_mode_of(weights: Tensor) -> SignMode:
    """Excitatory when no weight is negative, inhibitory when none is positive, else mixed."""
    if int(weights.min()) >= 0:
        return SignMode.EXCITATORY
    if int(weights.max()) <= 0:
        return SignMode.INHIBITORY
    return SignMode.MIXED


def prepare_dense_weights(
    weights: Tensor,
    fmt: LoihiFormat,
    sign_mode: SignMode | None = None,
    num_weight_bits: int | None = None,
) -> Tensor:
    """Integer weights as Lava's fixed-point Dense uses them on its first step.

    Clip to ``weight_bits`` (mixed: [-2**b, 2**b - 1]; excitatory [0, 2**b - 1]; inhibitory
    the negative of that), then clear the low ``weight_bits - num_weight_bits (+1 if mixed)``
    bits with an arithmetic shift (towards minus infinity, applied to the magnitude for
    inhibitory weights).
    """
    w = as_int(weights)
    mode = sign_mode or sign_mode_of(w)
    bits = fmt.weight_bits
    nwb = bits if num_weight_bits is None else int(num_weight_bits)
    if not 0 < nwb <= bits:
        raise StacError(f"num_weight_bits must be in 1..{bits}, got {nwb}")
    mixed = mode is SignMode.MIXED
    sign = -1 if mode is SignMode.INHIBITORY else 1
    w = (w * sign).clamp(-(1 << bits) if mixed else 0, (1 << bits) - 1)
    cut = bits - nwb + int(mixed)
    return ((w >> cut) << cut) * sign


class DenseFixedParams(NamedTuple):
    weights: Tensor  # [out, in] integers after prepare_dense_weights
    weight_exp: int  # shared exponent: the accumulation is shifted by it
    graded: bool  # False: binary spikes select columns; True: integer payloads multiply


def dense_params(
    weights: Tensor,
    weight_exp: int,
    graded: bool,
    fmt: LoihiFormat,
    sign_mode: SignMode | None = None,
    num_weight_bits: int | None = None,
) -> DenseFixedParams:
    """Prepared weights (:func:`prepare_dense_weights`) and an exponent checked against the
    format's range."""
    check_range("Dense weight_exp", int(weight_exp), fmt.weight_exp_min, fmt.weight_exp_max)
    w = prepare_dense_weights(weights, fmt, sign_mode, num_weight_bits)
    return DenseFixedParams(w, int(weight_exp), bool(graded))


class DenseFixedState(NamedTuple):
    a_buff: Tensor  # accumulation of the previous step, sent on this step


def dense_initial_state(shape: Sequence[int]) -> DenseFixedState:
    return DenseFixedState(torch.zeros(tuple(shape), dtype=torch.int64))


def out_of_width(x: Tensor, bits: int) -> int:
    """How many values of ``x`` lie outside the signed ``bits``-bit range ``[-2**(bits-1),
    2**(bits-1))``: the one overflow rule of the integer models. Values are always computed
    exactly (as Lava's Python models carry them, in 32 or 64 bits); a caller that must refuse
    a width does so from this count."""
    half = 1 << (bits - 1)
    return int(torch.count_nonzero((x < -half) | (x >= half)))


def dense_accumulate(s_in: Tensor, weights: Tensor, weight_exp: int, graded: bool) -> Tensor:
    """``W @ s`` shifted by ``weight_exp``, as ``PyDenseModelBitAcc`` accumulates one step,
    for any leading axes of ``s_in`` (``[..., in]``; several steps at once give the same rows).

    Graded: an int32 dot product of the payloads, which wraps before the shift; binary: the sum
    of the columns of the spiking inputs (``s != 0``) in 64 bits. The products are taken in
    float64 while every partial sum stays below 2**53 (exact, and BLAS-fast), else in int64.
    """
    s = as_int(s_in) if graded else (torch.as_tensor(s_in) != 0).to(torch.int64)
    w = as_int(weights)
    bound = float(s.abs().max()) * float(w.abs().sum(1).max()) if s.numel() and w.numel() else 0.0
    if bound < 2.0**53:
        acc = (s.to(torch.float64) @ w.T.to(torch.float64)).to(torch.int64)
    else:
        acc = s @ w.T
    if graded:
        acc = wrap_signed(acc, 32)
    return shift(acc, weight_exp)


def refuse_wide_dense(acc: Tensor, fmt: LoihiFormat) -> None:
    """Raise when an accumulation lies outside the signed ``input_bits`` range (the
    hardware's dendritic accumulator), from :func:`out_of_width`'s count."""
    if out_of_width(acc, fmt.input_bits):
        half = 1 << (fmt.input_bits - 1)
        over = (acc < -half) | (acc >= half)
        raise StacError(
            f"Dense accumulation {int(acc[over].abs().max())} overflows the "
            f"{fmt.input_bits}-bit dendritic accumulator; lower the weights or "
            "weight_exp"
        )


def dense_fixed_step(
    s_in: Tensor,
    state: DenseFixedState,
    params: DenseFixedParams,
    fmt: LoihiFormat,
    strict: bool = True,
) -> tuple[Tensor, DenseFixedState]:
    """One timestep of Lava's ``PyDenseModelBitAcc``: (output sent now, new state).

    ``s_in`` is ``[..., in]``; binary spikes are read as ``s_in != 0``. With ``strict`` an
    accumulation outside the signed ``input_bits`` range (:func:`out_of_width`) raises (the
    hardware's width; Lava's Python model would carry it on in 32 bits).
    """
    acc = dense_accumulate(s_in, params.weights, params.weight_exp, params.graded)
    if strict:
        refuse_wide_dense(acc, fmt)
    # Lava sends a_buff through an int32 channel.
    return wrap_signed(state.a_buff, 32), DenseFixedState(acc)


def delayed(acc: Tensor) -> Tensor:
    """What a Dense sends at each step of a run ``[S, out]`` whose accumulations are ``acc``:
    the previous step's, through an int32 channel (zeros at the first step)."""
    return wrap_signed(torch.cat([torch.zeros_like(acc[:1]), acc[:-1]]), 32)


def sigma_accumulate(a_in: Tensor) -> Tensor:
    """Lava's ``Sigma`` (``PySigmaInt``) over a run ``[S, n]``: ``sigma <- sigma + a_in`` in int32
    (wrapping); the value after each step."""
    return wrap_signed(torch.cumsum(as_int(a_in), 0), 32)


__all__ = [
    "DenseFixedParams",
    "DenseFixedState",
    "LIFFixedParams",
    "LIFFixedState",
    "SignMode",
    "delayed",
    "dense_accumulate",
    "dense_fixed_step",
    "dense_initial_state",
    "dense_params",
    "lif_fixed_step",
    "lif_initial_state",
    "lif_params",
    "out_of_width",
    "prepare_dense_weights",
    "refuse_wide_dense",
    "sigma_accumulate",
    "sign_mode_of",
]
