"""Sigma-delta neurons: graded spikes that carry changes, as Loihi 2 and Lava run them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stac.ir.nodes.base import StacNode, check_array

#: Activations a sigma-delta neuron applies to its integrated input plus bias.
SIGMA_DELTA_ACTIVATIONS = ("relu", "identity")


def check_integer_array(node: str, name: str, value: object) -> None:
    """Raise ValueError unless ``value`` is a numpy array of integers with at least one axis."""
    check_array(node, name, value)
    assert isinstance(value, np.ndarray)
    if value.dtype.kind not in "iu":
        raise ValueError(f"{node}.{name} must hold integers, got dtype {value.dtype}")
    if value.ndim == 0:
        raise ValueError(f"{node}.{name} must have at least one axis (the layer's shape)")


def check_int(node: str, name: str, value: object, minimum: int | None = None) -> None:
    """Raise ValueError unless ``value`` is an integer (not a bool) at least ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{node}.{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{node}.{name} must be >= {minimum}, got {value}")


@dataclass(frozen=True, eq=False)
class SigmaDelta(StacNode):
    r"""Sigma-delta neuron in integer arithmetic (Lava's ``SigmaDelta``, ``Delta`` and
    ``Sigma`` processes, fixed-point models; what lava-dl's netx builds for ``SDNN`` layers).

    Per timestep t, with integer input :math:`a_t`, :math:`e` = ``spike_exp + state_exp``,
    every value held in the state width (Lava's int32; two's-complement wrap), and
    :math:`f` the activation (ReLU or identity):

    .. math::
        x_t = a_t \ll \text{input\_exp}, \qquad
        \sigma_t = \begin{cases}\sigma_{t-1} + x_t & \text{sigma} \\ x_t & \text{else}\end{cases},
        \qquad y_t = f(\sigma_t + (b \ll e))

    With ``delta`` the neuron sends changes of :math:`y` as graded payloads, keeping what it
    did not send as a residue :math:`r`:

    .. math::
        d_t = y_t - y_{t-1} + r_{t-1}, \quad
        s_t = \begin{cases} d_t & |d_t| \ge \vartheta \ll e \\ 0 & \text{else}\end{cases},
        \quad r_t = d_t - s_t, \quad \text{out}_t = s_t \gg \text{state\_exp}

    (an arithmetic right shift, rounding toward minus infinity). With ``cum_error`` the test
    is on an accumulated error instead: :math:`\epsilon_t = \epsilon_{t-1} + d_t`, fire where
    :math:`|\epsilon_t| \ge \vartheta \ll e`, and :math:`\epsilon_t \leftarrow 0` where it
    fired. Without ``delta`` the output is :math:`y_t` itself (a sigma readout). All state
    starts at zero. netx's three SDNN roles are: a hidden layer (sigma, delta, ReLU,
    ``input_exp`` 0), the input encoder (delta only, identity, no bias, ``input_exp`` =
    ``spike_exp + state_exp``) and a ``sigma_output`` readout (sigma only, identity, no bias).

    A payload ``s`` stands for ``s / 2**spike_exp`` of the layer's activation unit; the next
    synapse multiplies it by integer weights, so the downstream sigma holds activations at
    ``2**(spike_exp + state_exp)`` per unit, the scale the bias and threshold are shifted to.
    """

    bias: np.ndarray  # integer bias mantissa per neuron; its shape is the layer's shape
    vth: int = 0  # threshold mantissa (netx's vThMant), compared as vth << e
    activation: str = "relu"  # one of SIGMA_DELTA_ACTIVATIONS, applied to sigma + bias
    sigma: bool = True  # integrate the input over time (False: the input is the value)
    delta: bool = True  # send changes as payloads (False: send the activation, a readout)
    input_exp: int = 0  # left shift of the input before use
    spike_exp: int = 0  # fraction bits a payload carries
    state_exp: int = 0  # fraction bits the state carries beyond a payload's
    cum_error: bool = False  # fire on the accumulated error (see above)

    host_op = False

    def __post_init__(self) -> None:
        check_integer_array("SigmaDelta", "bias", self.bias)
        check_int("SigmaDelta", "vth", self.vth, minimum=0)
        for key in ("input_exp", "spike_exp", "state_exp"):
            check_int("SigmaDelta", key, getattr(self, key), minimum=0)
        if self.activation not in SIGMA_DELTA_ACTIVATIONS:
            raise ValueError(
                f"SigmaDelta.activation {self.activation!r} is not one of {SIGMA_DELTA_ACTIVATIONS}"
            )
        for key in ("sigma", "delta", "cum_error"):
            if not isinstance(getattr(self, key), (bool, np.bool_)):
                raise ValueError(
                    f"SigmaDelta.{key} must be true or false, got {getattr(self, key)!r}"
                )
        if not (self.sigma or self.delta):
            raise ValueError(
                "SigmaDelta needs sigma or delta (or both); with neither it is "
                "an activation, not a neuron"
            )

    @property
    def scale_exp(self) -> int:
        """``e``: the shift that puts the bias and threshold on the state's scale."""
        return int(self.spike_exp) + int(self.state_exp)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.bias.shape)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.input_shape


__all__ = ["SIGMA_DELTA_ACTIVATIONS", "SigmaDelta", "check_int", "check_integer_array"]
