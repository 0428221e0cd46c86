"""Spiking neurons that NIR cannot express."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stac.ir.nodes.base import StacNode, check_array


@dataclass(frozen=True, eq=False)
class SignedIF(StacNode):
    r"""Integrate-and-fire neuron with signed spikes and soft reset (rate or graded coder).

    Per timestep t, with input current :math:`x_t` and threshold :math:`\theta > 0`:

    .. math::
        v_t = v_{t-1} + x_t, \quad
        s_t = \begin{cases} +1 & v_t \ge \theta/2 \\ -1 & v_t < -\theta/2 \\
              0 & \text{else}\end{cases},
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
    binary; g costs the host one reduction and one multiply per value. In general
    :math:`g = \max(f, r \max_c |x_c| / \theta_c)` with ``gain_floor`` f and ``gain_ratio``
    r (1 and 1 above). A floor of 0 lets g shrink the steps of a small token as well, which
    makes :math:`\theta g / T` a step per token; a ratio below 1 saturates the token's
    largest values a little to round the rest more finely (an all-zero token gets g = 1).

    **Graded spikes** (``max_payload`` K > 1, a multi-threshold neuron): each step emits an
    integer payload :math:`s_t = \mathrm{clip}(\lfloor v_t/\theta + 1/2 \rfloor, -K, K)`
    and subtracts :math:`\theta s_t`; K = 1 is the binary rule above. A spike then carries
    :meth:`bits_per_spike` bits (sign and magnitude); Loihi 2 carries such graded payloads.

    **Onset drive** (``onset_drive``): the op upstream is evaluated once on its accumulated
    input and sends its value as a single change event (sigma-delta coding), so the encoder
    receives the whole token's input :math:`T x` at the first step and nothing after, instead
    of :math:`x` at every step. A graded encoder then sends one spike per neuron for values up
    to :math:`K\theta/T` and drains larger ones at K per step. Either way, from
    :math:`v_0 = 0` the T-step output :math:`\frac{\theta}{T}\sum_t s_t` equals the
    quantiser :math:`\frac{\theta}{T}\,\mathrm{clip}(\lfloor T x/\theta + 1/2\rfloor,
    -TK, TK)` for onset drive (and for held drive whenever :math:`|x| \le K\theta`): a uniform
    quantiser of step :math:`\theta/T` with :math:`2TK + 1` levels.

    **Dead zone** (``dead_zone``, optional, per neuron, value units, >= 0): a firing threshold
    apart from the step, as a sigma-delta neuron's ``vth`` (lava-nc's ``SigmaDelta`` process,
    lava-dl's ``sigma_delta`` neuron): at a step where :math:`-d \le v_t < d` the neuron emits
    nothing and keeps its potential; otherwise the graded rule above. The interval is
    half-open, the same tie rule as the rounding :math:`\lfloor v/\theta + 1/2\rfloor`, so
    :math:`d = \theta/2` is exactly the neuron without a dead zone, and
    :math:`d = (D - 1/2)\,\theta` is exactly "silent while the rounded level is below D" (the
    chip's integer form, :func:`stac.sim.neurons.dead_zone_levels`). Absent (None): no dead
    zone, today's rule.
    """

    threshold: np.ndarray  # per-neuron spike value theta (> 0), shape (n,)
    token_gain: bool = False  # host-side per-token threshold gain (see above)
    gain_ratio: float = 1.0  # r: the gain is r times the token's largest |x_c| / theta_c ...
    gain_floor: float = 1.0  # f: ... and never below f (0: the step follows every token)
    max_payload: int = 1  # K: largest spike magnitude per step; 1 = binary spikes
    onset_drive: bool = False  # drive arrives once per token, at the first step (see above)
    dead_zone: np.ndarray | None = None  # per-neuron silent band [-d, d) (value units), or None

    host_op = False

    def __post_init__(self) -> None:
        check_array("SignedIF", "threshold", self.threshold, ndim=1)
        if not np.all(self.threshold > 0):
            raise ValueError("SignedIF.threshold must be > 0 for every neuron")
        if not isinstance(self.max_payload, (int, np.integer)) or not 1 <= self.max_payload < 2**31:
            raise ValueError(
                f"SignedIF.max_payload must be an integer >= 1, got {self.max_payload!r}"
            )
        if not 0 < self.gain_ratio <= 1 or not 0 <= self.gain_floor <= 1:
            raise ValueError(
                f"SignedIF.gain_ratio must be in (0, 1] and gain_floor in [0, 1], got "
                f"{self.gain_ratio!r} and {self.gain_floor!r}"
            )
        if self.dead_zone is not None:
            check_array("SignedIF", "dead_zone", self.dead_zone, ndim=1)
            if self.dead_zone.shape != self.threshold.shape:
                raise ValueError(
                    f"SignedIF.dead_zone has shape {self.dead_zone.shape}, the thresholds "
                    f"{self.threshold.shape}"
                )
            if not np.all(self.dead_zone >= 0):
                raise ValueError("SignedIF.dead_zone must be >= 0 for every neuron")

    def bits_per_spike(self) -> int:
        r"""Bits a spike carries. A binary spike: 1 (the sign picks the axon; its value lives in
        the synapses). A graded spike carries its value ``s * theta_c`` as an integer in units
        of the layer's smallest threshold: sign plus
        :math:`\lceil\log_2(K \theta_{max}/\theta_{min} + 1)\rceil` bits (exact when the
        thresholds are power-of-two multiples of each other, as full mode makes them). With a
        per-channel payload scale (``metadata["quant"]["payload_scale"] == "channel"``) the
        spike carries its count in units of its own threshold, the channel's power of two
        living in the synapses: sign plus :math:`\lceil\log_2(K + 1)\rceil` bits."""
        if self.max_payload == 1:
            return 1
        theta = np.asarray(self.threshold, dtype=np.float64)
        spread = 1.0 if self.per_channel_payload else float(theta.max() / theta.min())
        top = float(self.max_payload) * spread
        return 1 + int(np.ceil(np.log2(top + 1)))

    @property
    def per_channel_payload(self) -> bool:
        """Whether a graded spike's payload counts in its own channel's threshold."""
        quant = (self.metadata or {}).get("quant") or {}
        return quant.get("payload_scale") == "channel"

    def levels(self, steps: int) -> int:
        """Distinct values the T-step output can take: 2 T K + 1."""
        return 2 * steps * int(self.max_payload) + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (int(self.threshold.shape[0]),)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.input_shape
