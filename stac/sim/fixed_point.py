r"""Bit-accurate fixed-point step functions: Loihi-style CUBA LIF, Dense, and SignedIF.

The LIF and Dense steps follow Lava's bit-accurate process models
(``Loihi2SimCfg(select_tag='fixed_pt')``: ``PyLifModelBitAcc`` in
``src/lava/proc/lif/models.py`` and ``PyDenseModelBitAcc`` in ``src/lava/proc/dense/models.py``)
operation by operation, including their rounding and overflow quirks, so that a cross-check
against Lava can hold bit for bit. The bit widths and shifts are data (:class:`LoihiFormat`,
read from a hardware profile), not constants in the code.

All integers are held in ``torch.int64`` tensors; where Lava stores a value in an ``int32``
array the step wraps it to 32 bits explicitly, so the result does not depend on the dtype.

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
``weight_exp`` (arithmetically right when negative). Weights are first clipped to
``weight_bits`` and
their low bits truncated exactly as Lava does (:func:`prepare_dense_weights`): mixed-sign
weights lose their least significant bit, so they are even. Lava's Dense output port is
declared 16 bits but its Python model does not enforce that width; :func:`dense_fixed_step`
refuses an output outside ``input_bits`` unless ``strict=False`` (then it behaves as Lava's
Python model: 32-bit wrap only).

SignedIF (stac's rate coder, :class:`stac.ir.nodes.SignedIF`, binary or graded with payloads
up to K) in fixed point: integer drive ``x``, integer per-neuron threshold ``theta``;
``v <- sat(v + x)``, ``s = clamp(floor((2v + theta) / (2 theta)), -K, K)``,
``v <- v - s * theta``. With integer inputs this is exactly the float rule
(``floor(v / theta + 0.5)``), so the two agree spike for spike; :func:`quantise_drive` maps a
float drive onto the integer grid.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import Callable, NamedTuple, Sequence

import torch

from stac.errors import StacError
from stac.profiles import Profile

Tensor = torch.Tensor


# --- the format --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoihiFormat:
    """Bit widths and alignment shifts of a Loihi-style neuro core (a profile's
    ``[fixed_point]`` section plus ``chip.weight_bits``; the names are the profile's)."""

    state_bits: int  # width of the current u and voltage v (two's complement)
    decay_bits: int  # width of du and dv; a decay of du / 2**decay_bits per step
    threshold_bits: int  # width of the (unsigned) threshold mantissa
    threshold_shift: int  # left shift that MSB-aligns the threshold and the synaptic input
    bias_mantissa_bits: int  # width of the signed bias mantissa
    bias_exp_bits: int  # width of the bias exponent
    input_bits: int  # width of a Dense output (the dendritic accumulator a LIF receives)
    weight_bits: int  # width of a synaptic weight
    weight_exp_min: int  # range of the shared weight exponent
    weight_exp_max: int

    @classmethod
    def from_profile(cls, profile: Profile) -> "LoihiFormat":
        """The format of ``profile``; a StacError names any field it lacks."""
        values = {}
        for f in fields(cls):
            section = "chip" if f.name == "weight_bits" else "fixed_point"
            value = profile.values.get(section, {}).get(f.name)
            if value is None:
                raise StacError(f"hardware profile {profile.name} ({profile.path}) has no field "
                                f"'{section}.{f.name}', needed for fixed-point simulation")
            values[f.name] = int(value)
        return cls(**values)

    @property
    def uv_max(self) -> int:
        """2**(state_bits-1): u wraps above it, v saturates one below it."""
        return 1 << (self.state_bits - 1)


# --- integer helpers ---------------------------------------------------------------------------


def wrap_signed(x: Tensor, bits: int) -> Tensor:
    """Two's-complement wrap of ``x`` into ``bits`` bits (what storing into intN does)."""
    half = 1 << (bits - 1)
    return torch.remainder(x + half, 1 << bits) - half


def shift(x: Tensor, exp: int | Tensor) -> Tensor:
    """``x << exp`` for exp >= 0, an arithmetic (floor) ``x >> -exp`` otherwise."""
    exp = torch.as_tensor(exp, dtype=torch.int64)
    return torch.where(exp >= 0, x << exp.clamp_min(0), x >> (-exp).clamp_min(0))


def decay_toward_zero(x: Tensor, keep: int, bits: int) -> Tensor:
    """``sign(x) * (|x| * keep >> bits)``: multiply by keep / 2**bits, rounding toward zero."""
    prod = x * keep
    return torch.sign(prod) * (prod.abs() >> bits)


def _check_range(name: str, x: Tensor | int, lo: int, hi: int) -> None:
    t = torch.as_tensor(x)
    if t.numel() and (int(t.min()) < lo or int(t.max()) > hi):
        raise StacError(f"{name} must lie in [{lo}, {hi}], got values in "
                        f"[{int(t.min())}, {int(t.max())}]")


def _int(x: Tensor | int | Sequence[int]) -> Tensor:
    t = torch.as_tensor(x)
    if t.is_floating_point():
        raise StacError(f"fixed-point values must be integers, got dtype {t.dtype}")
    return t.to(torch.int64)


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


def lif_params(du: int, dv: int, vth: int | Tensor, bias_mant: int | Tensor = 0,
               bias_exp: int | Tensor = 0, ds_offset: int = 1, dm_offset: int = 0,
               fmt: LoihiFormat | None = None) -> LIFFixedParams:
    """Parameters, checked against ``fmt``'s ranges when given (each error names its field).

    The offsets default to what Lava's bit-accurate LIF uses (ds_offset 1, dm_offset 0).
    Without ``fmt`` any integers are taken, as Lava's Python model takes them.
    """
    p = LIFFixedParams(int(du), int(dv), _int(vth), _int(bias_mant), _int(bias_exp),
                       int(ds_offset), int(dm_offset))
    if fmt is not None:
        _check_range("LIF du", p.du, 0, (1 << fmt.decay_bits) - 1)
        _check_range("LIF dv", p.dv, 0, (1 << fmt.decay_bits) - 1)
        _check_range("LIF vth", p.vth, 0, (1 << fmt.threshold_bits) - 1)
        _check_range("LIF ds_offset", p.ds_offset, 0, 1)
        _check_range("LIF dm_offset", p.dm_offset, 0, 1)
        half = 1 << (fmt.bias_mantissa_bits - 1)
        _check_range("LIF bias_mant", p.bias_mant, -half, half - 1)
        top = (1 << fmt.bias_exp_bits) - 1
        _check_range("LIF bias_exp", p.bias_exp, -top, top)
    return p


def lif_initial_state(shape: Sequence[int]) -> LIFFixedState:
    zeros = torch.zeros(tuple(shape), dtype=torch.int64)
    return LIFFixedState(zeros, zeros.clone())


def lif_fixed_step(a_in: Tensor, state: LIFFixedState, params: LIFFixedParams,
                   fmt: LoihiFormat) -> tuple[Tensor, LIFFixedState]:
    """One timestep of Lava's ``PyLifModelBitAcc``; returns (spikes as bool, new state)."""
    unity = 1 << fmt.decay_bits
    top = fmt.uv_max
    activation = wrap_signed(_int(a_in) << fmt.threshold_shift, 32)
    u = wrap_signed(decay_toward_zero(state.u, unity - (params.du + params.ds_offset),
                                      fmt.decay_bits) + activation, 32)
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


def prepare_dense_weights(weights: Tensor, fmt: LoihiFormat, sign_mode: SignMode | None = None,
                          num_weight_bits: int | None = None) -> Tensor:
    """Integer weights as Lava's fixed-point Dense uses them on its first step.

    Clip to ``weight_bits`` (mixed: [-2**b, 2**b - 1]; excitatory [0, 2**b - 1]; inhibitory
    the negative of that), then clear the low ``weight_bits - num_weight_bits (+1 if mixed)``
    bits with an arithmetic shift (towards minus infinity, applied to the magnitude for
    inhibitory weights).
    """
    w = _int(weights)
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


def dense_params(weights: Tensor, weight_exp: int, graded: bool, fmt: LoihiFormat,
                 sign_mode: SignMode | None = None,
                 num_weight_bits: int | None = None) -> DenseFixedParams:
    """Prepared weights (:func:`prepare_dense_weights`) and an exponent checked against the
    format's range."""
    _check_range("Dense weight_exp", int(weight_exp), fmt.weight_exp_min, fmt.weight_exp_max)
    w = prepare_dense_weights(weights, fmt, sign_mode, num_weight_bits)
    return DenseFixedParams(w, int(weight_exp), bool(graded))


class DenseFixedState(NamedTuple):
    a_buff: Tensor  # accumulation of the previous step, sent on this step


def dense_initial_state(shape: Sequence[int]) -> DenseFixedState:
    return DenseFixedState(torch.zeros(tuple(shape), dtype=torch.int64))


def dense_fixed_step(s_in: Tensor, state: DenseFixedState, params: DenseFixedParams,
                     fmt: LoihiFormat, strict: bool = True) -> tuple[Tensor, DenseFixedState]:
    """One timestep of Lava's ``PyDenseModelBitAcc``: (output sent now, new state).

    ``s_in`` is ``[..., in]``; binary spikes are read as ``s_in != 0``. With ``strict`` an
    accumulation outside the signed ``dense_out_bits`` range raises (the hardware's width;
    Lava's Python model would carry it on in 32 bits).
    """
    if params.graded:  # Lava: an int32 dot product, which wraps before the shift
        acc = wrap_signed(_int(s_in) @ params.weights.T, 32)
    else:  # Lava: a sum of the selected columns in 64 bits
        acc = (torch.as_tensor(s_in) != 0).to(torch.int64) @ params.weights.T
    acc = shift(acc, params.weight_exp)
    if strict:
        half = 1 << (fmt.input_bits - 1)
        over = (acc < -half) | (acc >= half)
        if bool(over.any()):
            raise StacError(
                f"Dense accumulation {int(acc[over].abs().max())} overflows the "
                f"{fmt.input_bits}-bit dendritic accumulator; lower the weights or "
                "weight_exp"
            )
    # Lava sends a_buff through an int32 channel.
    return wrap_signed(state.a_buff, 32), DenseFixedState(acc)


# --- SignedIF ----------------------------------------------------------------------------------


class SignedIFFixedState(NamedTuple):
    v: Tensor  # membrane potential, uv_bits, saturating


def quantise_drive(x: Tensor, threshold: Tensor, fmt: LoihiFormat,
                   headroom: int = 4) -> tuple[Tensor, Tensor]:
    """Map a float drive and per-neuron thresholds onto integers: ``(x_q, theta_q)``.

    Every threshold becomes ``theta_q = 2**(state_bits - 1 - ceil(log2(headroom)))`` (2**21
    for 24-bit state and the default headroom 4) and the drive is scaled by the same factor
    per neuron, rounded to nearest and saturated to the v range. The potential then holds
    ``headroom`` thresholds before it saturates: 4 covers a held drive of up to twice the
    threshold; an onset drive (T steps of drive at once) with payloads up to K needs about
    ``T * K + 1``. The spike values are ``theta`` (float), so the grid only sets how finely
    the drive is resolved (1 / theta_q of a threshold).
    """
    if headroom < 2:
        raise StacError(f"headroom must be at least 2 thresholds, got {headroom}")
    shift_bits = fmt.state_bits - 1 - (int(headroom) - 1).bit_length()
    if shift_bits < 1:
        raise StacError(f"a {fmt.state_bits}-bit potential cannot hold {headroom} thresholds")
    theta_q = 1 << shift_bits
    scale = theta_q / threshold.to(torch.float64)
    x_q = torch.round(x.to(torch.float64) * scale).clamp(-(fmt.uv_max - 1), fmt.uv_max - 1)
    return x_q.to(torch.int64), torch.full_like(threshold, theta_q, dtype=torch.int64)


def signed_if_fixed_step(x: Tensor, state: SignedIFFixedState, theta: Tensor,
                         fmt: LoihiFormat, max_payload: int = 1
                         ) -> tuple[Tensor, SignedIFFixedState]:
    """One timestep of the integer SignedIF; returns (payloads in [-K, K], new state).

    ``s = clamp(floor((2v + theta) / (2 theta)), -K, K)``: the potential in thresholds,
    rounded half up, exactly (the float rule is ``floor(v / theta + 0.5)``); K = 1 gives
    binary signed spikes.
    """
    top = fmt.uv_max - 1
    v = (state.v + _int(x)).clamp(-top, top)
    s = torch.div(2 * v + theta, 2 * theta, rounding_mode="floor").clamp(-max_payload,
                                                                          max_payload)
    return s, SignedIFFixedState(v - s * theta)


def signed_if_fixed_scan(drive: Tensor, theta: Tensor, steps: int, fmt: LoihiFormat,
                         per_step: bool = False, max_payload: int = 1,
                         onset: bool = False) -> Tensor:
    """``steps`` timesteps from v = 0, as :func:`stac.sim.neurons.signed_if_scan` takes its
    drive (held, per step, or with ``onset`` ``steps * drive`` at the first step only);
    returns the payloads ``[steps, ...]``."""
    if onset and per_step:
        raise StacError("onset drive takes one value per token, not one per step")
    drive = _int(drive)
    first = drive[0] if per_step else drive
    if per_step:
        inputs = drive[:steps]
    elif onset:
        inputs = torch.cat([(first * steps)[None], torch.zeros_like(first).expand(
            steps - 1, *first.shape)])
    else:
        inputs = first.expand(steps, *first.shape)
    out, _ = scan(lambda x, st: signed_if_fixed_step(x, st, theta, fmt, max_payload), inputs,
                  SignedIFFixedState(torch.zeros_like(first)))
    return out


def scan(step: Callable[[Tensor, tuple], tuple[Tensor, tuple]], inputs: Tensor,
         state: tuple) -> tuple[Tensor, tuple]:
    """Run ``step`` over the leading (time) axis of ``inputs``; stack the outputs."""
    outputs = []
    for x in inputs:
        out, state = step(x, state)
        outputs.append(out)
    return torch.stack(outputs), state


__all__ = [
    "DenseFixedParams", "DenseFixedState", "LIFFixedParams", "LIFFixedState", "LoihiFormat",
    "SignMode", "dense_params", "SignedIFFixedState", "decay_toward_zero", "dense_fixed_step",
    "dense_initial_state", "lif_fixed_step", "lif_initial_state", "lif_params",
    "prepare_dense_weights", "quantise_drive", "scan", "shift", "sign_mode_of",
    "signed_if_fixed_scan", "signed_if_fixed_step", "wrap_signed",
]
