"""Spiking neurons that NIR cannot express."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stac.ir.nodes.base import StacNode, check_array


@dataclass(frozen=True, eq=False)
class SignedIF(StacNode):
    r"""Integrate-and-fire neuron with signed spikes and soft reset (a rate coder).

    Per timestep t, with input current :math:`x_t` and threshold :math:`\theta > 0`:

    .. math::
        v_t = v_{t-1} + x_t, \quad
        s_t = \begin{cases} +1 & v_t \ge \theta/2 \\ -1 & v_t < -\theta/2 \\ 0 & \text{else}\end{cases},
        \quad v_t \leftarrow v_t - \theta s_t

    and the spike carries the value :math:`\theta s_t`. Driven by a constant :math:`x` with
    :math:`|x| \le \theta` for T steps from :math:`v_0 = 0`, the mean output
    :math:`\frac{\theta}{T}\sum_t s_t` is :math:`x` rounded to a grid of step :math:`\theta / T`:
    a (2T+1)-level quantiser. The half-threshold firing rule makes that rounding to nearest
    rather than truncation. At most one spike per step: larger inputs saturate.

    With ``token_gain`` the host, which computes this encoder's drive, also scales every
    threshold of a token by :math:`g = \max(1, \max_c |x_c| / \theta_c)`, so that a token
    outside the calibrated range is quantised more coarsely instead of saturating; the host
    multiplies the downstream accumulators by the same g when it reads them. The spikes stay
    binary; g costs the host one reduction and one multiply per value.
    """

    threshold: np.ndarray  # per-neuron spike value theta (> 0), shape (n,)
    token_gain: bool = False  # host-side per-token threshold gain (see above)

    host_op = False

    def __post_init__(self) -> None:
        check_array("SignedIF", "threshold", self.threshold, ndim=1)
        if not np.all(self.threshold > 0):
            raise ValueError("SignedIF.threshold must be > 0 for every neuron")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (int(self.threshold.shape[0]),)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.input_shape
