"""The chip's side of a value leaving it for the host: a saturating graded readout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stac.ir.nodes.base import StacNode, check_array

#: Widest readout payload stac accepts (the widest graded spike any profile carries).
MAX_READOUT_BITS = 32


@dataclass(frozen=True, eq=False)
class Readout(StacNode):
    r"""A linear map's output compartments sending their token's sum to the host as one graded
    spike of ``bits`` bits (sign and magnitude), rounded and saturated.

    A linear map driven by spikes accumulates, per output channel c, the sum :math:`S_c` of
    its inputs over the token's T steps; a host op needs that value once per token. The
    compartment sends :math:`S_c` as an integer level in units of ``step[c]``:

    .. math::
        \ell_c = \mathrm{clip}(\lfloor S_c / \mathrm{step}_c + 1/2 \rfloor, -L, L),\quad
        L = 2^{b-1} - 1,

    and the host reads :math:`\ell_c\,\mathrm{step}_c`. In the simulator a value is the mean
    over T steps, so the node maps a mean :math:`x` to
    :math:`\mathrm{clip}(\lfloor T x / \mathrm{step} + 1/2 \rfloor, -L, L)\,\mathrm{step} / T`.

    Conversion (``--readout-bits``) sets ``step[c] = 2^e u_c``, with :math:`u_c` the integer
    unit of channel c's accumulator (its weight row's scale times the driving encoder's
    smallest threshold), so the level is the integer accumulator shifted right by e bits:
    what a neuron's graded spike carries. e is the smallest shift that fits the largest sum
    seen on the calibration text, with one bit of headroom, into ``bits``; larger sums
    saturate. The node adds no neurons and no synapses (it is the rule by which the map's own
    compartments send), and the host link prices each value at ``bits``.
    """

    step: np.ndarray  # per-channel value of one level, in units of the token's sum (> 0)
    bits: int  # payload width, sign included

    host_op = False

    def __post_init__(self) -> None:
        check_array("Readout", "step", self.step, ndim=1)
        if not np.all(self.step > 0):
            raise ValueError("Readout.step must be > 0 for every channel")
        if not isinstance(self.bits, (int, np.integer)) or not 2 <= self.bits <= MAX_READOUT_BITS:
            raise ValueError(
                f"Readout.bits must be an integer in [2, {MAX_READOUT_BITS}], got {self.bits!r}"
            )

    @property
    def max_level(self) -> int:
        """L: the largest level magnitude a payload of ``bits`` carries."""
        return 2 ** (int(self.bits) - 1) - 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (int(self.step.shape[0]),)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.input_shape
