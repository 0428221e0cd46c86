r"""Integer arithmetic for stac's bit-accurate models: the chip's number format and helpers.

:class:`LoihiFormat` holds the bit widths and alignment shifts of a Loihi-style neuro core, read
from a hardware profile (they are data, not constants in the code). The helpers are the integer
operations every fixed-point model shares: two's-complement wrapping, shifts by a signed
exponent, decay with rounding toward zero, and a scan over time. The models themselves live
one family per module: Loihi's CUBA LIF, Dense and Sigma as Lava computes them in
:mod:`stac.sim.loihi`, stac's signed IF encoder (float and integer) in :mod:`stac.sim.neurons`.

All integers are held in ``torch.int64`` tensors; where Lava stores a value in an ``int32``
array a model wraps it to 32 bits explicitly, so the result does not depend on the dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Sequence, TypeVar

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
                raise StacError(
                    f"hardware profile {profile.name} ({profile.path}) has no field "
                    f"'{section}.{f.name}', needed for fixed-point simulation"
                )
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


def check_range(name: str, x: Tensor | int, lo: int, hi: int) -> None:
    """Raise a StacError naming ``name`` when a value of ``x`` lies outside ``[lo, hi]``."""
    t = torch.as_tensor(x)
    if t.numel() and (int(t.min()) < lo or int(t.max()) > hi):
        raise StacError(
            f"{name} must lie in [{lo}, {hi}], got values in [{int(t.min())}, {int(t.max())}]"
        )


def as_int(x: Tensor | int | Sequence[int]) -> Tensor:
    """``x`` as int64; a StacError when it holds floats (fixed-point values are integers)."""
    t = torch.as_tensor(x)
    if t.is_floating_point():
        raise StacError(f"fixed-point values must be integers, got dtype {t.dtype}")
    return t.to(torch.int64)


S = TypeVar("S")  # a step function's state


def scan(
    step: Callable[[Tensor, S], tuple[Tensor, S]], inputs: Tensor, state: S
) -> tuple[Tensor, S]:
    """Run ``step`` over the leading (time) axis of ``inputs``; stack the outputs."""
    outputs = []
    for x in inputs:
        out, state = step(x, state)
        outputs.append(out)
    return torch.stack(outputs), state


__all__ = [
    "LoihiFormat",
    "as_int",
    "check_range",
    "decay_toward_zero",
    "scan",
    "shift",
    "wrap_signed",
]
