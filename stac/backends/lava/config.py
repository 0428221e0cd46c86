"""What the lava backend reads from a hardware profile's ``[lava]`` section.

The section holds the widths Lava's bit-accurate models compute in (a profile whose
``[fixed_point]`` widths differ cannot be run bit-accurately by Lava), the width of Lava's
Python message and readout arrays, and the backend's own design limits (each labelled as a stac
design choice in the profile). Only profiles that list the ``lava`` backend need it; for any
other the backend refuses with an error naming the missing field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from stac.errors import StacError
from stac.profiles import Profile

#: [lava] fields that must equal the profile's [fixed_point] (or [chip]) field of the same name.
WIDTH_FIELDS = (
    "state_bits",
    "decay_bits",
    "threshold_bits",
    "threshold_shift",
    "bias_mantissa_bits",
    "bias_exp_bits",
    "weight_bits",
)


@dataclass(frozen=True)
class LavaLimits:
    """The ``[lava]`` section of a profile (names are the profile's)."""

    state_bits: int  # u, v of Lava's fixed-point LIF
    decay_bits: int  # du, dv
    threshold_bits: int  # vth
    threshold_shift: int  # vth and a_in are shifted left by this
    bias_mantissa_bits: int  # bias_mant
    bias_exp_bits: int  # bias_exp
    weight_bits: int  # Dense weights
    message_bits: int  # int32 ports, Dense a_buff and Sigma readout in Lava's Python models
    payload_parts: int  # most messages one graded payload is split into
    channel_groups: int  # most power-of-two threshold groups an encoder is split into
    held_headroom: int  # thresholds a held drive may reach over T steps
    netx_bias_exp: int  # exponent lava-dl's netx reads every bias mantissa at

    @classmethod
    def from_profile(cls, profile: Profile) -> "LavaLimits":
        """The profile's ``[lava]`` section; a StacError names the first missing field."""
        table = profile.values.get("lava") or {}
        values = {}
        for f in fields(cls):
            if f.name not in table:
                raise StacError(
                    f"hardware profile {profile.name} ({profile.path}) has no field "
                    f"'lava.{f.name}', which the lava backend needs (add a [lava] "
                    "section as in stac/hw_profiles/loihi2.toml)"
                )
            values[f.name] = int(table[f.name])
        return cls(**values)

    @property
    def readout_limit(self) -> int:
        """A token's sum of one readout must stay below this to be read back exactly: the
        signed message width, halved once more because a Dense halves its doubled sum only
        after the product (:mod:`stac.backends.lava.blocks`)."""
        return 1 << (self.message_bits - 2)


__all__ = ["LavaLimits", "WIDTH_FIELDS"]
