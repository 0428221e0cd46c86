"""The adaptive exponential integrate-and-fire neuron (AdEx), which NIR lacks.

Besides the node, this module holds the two facts the rest of stac needs about it and that
belong to the node type rather than to a pass: no hardware profile can run it in fixed point
(:func:`fixed_point_support`), and which AdEx nodes are exactly a NIR ``LIF`` (:func:`as_nir`).
"""

from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np

from stac.ir.nodes.base import StacNode, check_array

#: The per-neuron fields, in the order they are checked.
ADEX_FIELDS = ("tau_m", "tau_w", "a", "b", "delta_t", "v_th", "v_reset", "v_rest", "r", "v_peak")


@dataclass(frozen=True, eq=False)
class AdEx(StacNode):
    r"""Adaptive exponential integrate-and-fire neuron (Brette & Gerstner 2005).

    With input current :math:`I`, membrane potential :math:`v` and adaptation current
    :math:`w`, per neuron:

    .. math::
        \tau_m \dot v = (v_\text{rest} - v)
            + \Delta_T \exp\!\Big(\frac{v - v_\text{th}}{\Delta_T}\Big) + R\,(I - w), \qquad
        \tau_w \dot w = a\,(v - v_\text{rest}) - w,

    and when :math:`v > v_\text{peak}` the neuron emits a spike and resets,
    :math:`v \leftarrow v_\text{reset}`, :math:`w \leftarrow w + b`. This is Brette &
    Gerstner's :math:`C\dot V = -g_L(V - E_L) + g_L\Delta_T e^{(V - V_T)/\Delta_T} - w + I`
    divided by :math:`g_L`, with :math:`\tau_m = C/g_L`, :math:`R = 1/g_L`,
    :math:`v_\text{rest} = E_L` and :math:`v_\text{th} = V_T` (the *soft* threshold where the
    exponential takes over; the spike itself is cut at :math:`v_\text{peak}`). ``a`` is a
    conductance and ``b`` a current in the units of ``1/R`` and ``I``; either may be negative.

    :math:`\Delta_T = 0` is the limit in which the exponential becomes a hard wall at
    :math:`v_\text{th}`: the neuron spikes when :math:`v > v_\text{th}` and ``v_peak`` is
    unused. With also :math:`a = b = 0` (and :math:`w` starting at 0) it is exactly NIR's LIF
    (:func:`as_nir`). The state starts at :math:`v = v_\text{rest}`, :math:`w = 0`.

    Units are the caller's, as long as they are consistent: times (``tau_m``, ``tau_w`` and
    the simulator's ``dt``) in one unit (NIR graphs use seconds), ``R`` times a current in
    the unit of the voltages. Every field is a per-neuron array of shape (n,); the node maps
    n input currents to n spike trains. The step semantics are :func:`stac.sim.adex.adex_step`.
    """

    tau_m: np.ndarray  # membrane time constant C / g_L (> 0), shape (n,)
    tau_w: np.ndarray  # adaptation time constant (> 0), shape (n,)
    a: np.ndarray  # subthreshold adaptation conductance (any sign), shape (n,)
    b: np.ndarray  # spike-triggered adaptation increment of w (any sign), shape (n,)
    delta_t: np.ndarray  # slope factor Delta_T (>= 0; 0 = hard threshold), shape (n,)
    v_th: np.ndarray  # exponential (soft) threshold V_T, shape (n,)
    v_reset: np.ndarray  # potential after a spike (< v_peak), shape (n,)
    v_rest: np.ndarray  # leak reversal potential E_L, shape (n,)
    r: np.ndarray  # membrane resistance 1 / g_L (> 0), shape (n,)
    v_peak: np.ndarray  # spike cut-off (> v_th where delta_t > 0), shape (n,)

    host_op = False  # a spiking neuron; no profile runs it yet (see fixed_point_support)

    def __post_init__(self) -> None:
        for name in ADEX_FIELDS:
            check_array("AdEx", name, getattr(self, name), ndim=1)
        n = self.tau_m.shape
        for name in ADEX_FIELDS:
            if getattr(self, name).shape != n:
                raise ValueError(
                    f"AdEx.{name} has shape {getattr(self, name).shape}, but "
                    f"tau_m has {n}: every field needs one value per neuron"
                )
        for name in ("tau_m", "tau_w", "r"):
            if not np.all(getattr(self, name) > 0):
                raise ValueError(f"AdEx.{name} must be > 0 for every neuron")
        if not np.all(self.delta_t >= 0):
            raise ValueError("AdEx.delta_t must be >= 0 for every neuron (0 = hard threshold)")
        soft = self.delta_t > 0
        if np.any(soft & ~(self.v_peak > self.v_th)):
            raise ValueError("AdEx.v_peak must be above v_th wherever delta_t > 0")
        if np.any(soft & ~(self.v_reset < self.v_peak)):
            raise ValueError("AdEx.v_reset must be below v_peak wherever delta_t > 0")
        if np.any(~soft & ~(self.v_reset < self.v_th)):
            raise ValueError(
                "AdEx.v_reset must be below v_th wherever delta_t = 0 "
                "(the spike threshold), or the neuron fires at every step"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (int(self.tau_m.shape[0]),)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.input_shape


def fixed_point_support(node: AdEx, name: str = "AdEx") -> str:
    """Why no hardware profile can run ``node`` (named ``name``) in fixed point.

    Always a reason: no profile's fixed-point neuron model includes an exponential term or an
    adaptation current. Loihi 2's programmable neuron microcode could in principle hold AdEx,
    but stac has no source for a fixed-point form of it (number formats, the exponential's
    approximation), so it cannot quantise, price or check one. The quantise and legality
    passes turn this sentence into a legality error for the node.
    """
    exact_lif = " (an AdEx with a = b = 0 and delta_t = 0 is a LIF: build it as nir.LIF)"
    return (
        f"{name}: AdEx neurons ({node.input_shape[0]}) have no fixed-point form on any "
        "hardware profile: stac has no source for an exponential or adaptation current in "
        f"a chip's neuron model{exact_lif}; simulate it in float (stac.sim.adex)"
    )


def as_nir(node: AdEx) -> nir.LIF | None:
    r"""The NIR ``LIF`` that ``node`` is exactly, or None.

    Only when :math:`a = b = 0` and :math:`\Delta_T = 0` for every neuron: then :math:`w`
    stays 0 and the AdEx equation is NIR's :math:`\tau \dot v = (v_\text{leak} - v) + R I`
    with :math:`\tau = \tau_m`, :math:`v_\text{leak} = v_\text{rest}`, threshold
    :math:`v_\text{th}` (strict ``>``) and reset to :math:`v_\text{reset}`. Any other AdEx has
    no NIR form (NIR 1.0.8 has no adaptation or exponential term).
    """
    if np.any(node.a != 0) or np.any(node.b != 0) or np.any(node.delta_t != 0):
        return None
    f64 = np.float64
    return nir.LIF(
        tau=node.tau_m.astype(f64),
        r=node.r.astype(f64),
        v_leak=node.v_rest.astype(f64),
        v_threshold=node.v_th.astype(f64),
        v_reset=node.v_reset.astype(f64),
    )


__all__ = ["ADEX_FIELDS", "AdEx", "as_nir", "fixed_point_support"]
