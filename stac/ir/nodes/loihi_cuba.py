"""Loihi's current-based LIF neuron with its fixed-point registers, as netx files store it.

NIR's ``CubaLIF`` is a continuous-time neuron in floats; Loihi's is an integer machine whose
decays round toward zero, whose current wraps, whose voltage saturates and whose threshold and
input are aligned by a left shift. Those rules do not round-trip through ``nir.CubaLIF`` (no
``dt`` and ``tau`` reproduce ``tz(u * (D - i_decay))`` bit for bit), so a netx ``CUBA`` neuron
becomes this node, which keeps Loihi's integers as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stac.ir.nodes.base import StacNode
from stac.ir.nodes.sigma_delta import check_int, check_integer_array


@dataclass(frozen=True, eq=False)
class LoihiCubaLIF(StacNode):
    r"""Loihi's CUBA LIF compartment in integer arithmetic (Lava's ``LIF`` process,
    ``PyLifModelBitAcc``; what lava-dl's netx builds for ``CUBA`` layers).

    Per timestep, with input :math:`a_t`, :math:`D = 2^{\text{decay\_bits}}`,
    :math:`\operatorname{tz}(x) = \operatorname{sign}(x)\lfloor |x| / D \rfloor` and the
    profile's ``state_bits`` B and ``threshold_shift`` k:

    .. math::
        u_t = \operatorname{wrap}_B\big(\operatorname{tz}(u_{t-1}(D - \text{i\_decay}))
              + (a_t \ll k)\big)

        v_t = \operatorname{clip}\big(\operatorname{tz}(v_{t-1}(D - \text{v\_decay})) + u_t
              + (\text{bias\_mant} \ll \text{bias\_exp}),\ \pm(2^{B-1} - 1)\big)

        s_t = [v_t > \vartheta \ll k], \qquad v_t \leftarrow 0 \text{ where } s_t

    (a negative ``bias_exp`` shifts right, arithmetically). ``i_decay`` and ``v_decay`` are
    Loihi's decay registers (netx's ``iDecay`` and ``vDecay``): 0 keeps the value, D clears
    it. Lava's LIF takes ``du = i_decay - 1`` and adds its ``ds_offset`` of 1, which is the same
    rule. The spikes are binary; u is not reset. Loihi's refractory delay of one step (the
    spike step itself) is the only one Lava's LIF runs, so none is stored here.
    """

    bias_mant: np.ndarray  # integer bias mantissa per neuron; its shape is the layer's shape
    i_decay: int  # current decay per step, in units of 1 / 2**decay_bits (netx iDecay)
    v_decay: int  # voltage decay per step, same units (netx vDecay)
    vth: int  # unsigned threshold mantissa (netx vThMant), compared as vth << threshold_shift
    bias_exp: int = 0  # exponent of bias_mant (netx reads every bias at one exponent)

    host_op = False

    def __post_init__(self) -> None:
        check_integer_array("LoihiCubaLIF", "bias_mant", self.bias_mant)
        for key in ("i_decay", "v_decay", "vth"):
            check_int("LoihiCubaLIF", key, getattr(self, key), minimum=0)
        check_int("LoihiCubaLIF", "bias_exp", self.bias_exp)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.bias_mant.shape)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.input_shape


__all__ = ["LoihiCubaLIF"]
