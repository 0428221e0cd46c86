r"""A layer of AdEx neurons whose parameters learn by surrogate gradient descent.

The layer steps with :func:`stac.sim.adex.adex_step` (the one semantics of
:class:`stac.ir.nodes.adex.AdEx`), its spikes made differentiable by the SuperSpike surrogate
(:mod:`stac.train.surrogate`). Seven per-neuron parameters learn, each stored as an
unconstrained tensor ``raw_<name>`` and mapped to a valid value, so that no optimiser step can
leave the model's domain:

========================  ===========================================  =====================
parameter                 value from the raw tensor                    keeps
========================  ===========================================  =====================
``tau_m, tau_w, delta_t``  :math:`e^{\text{raw}}`                       > 0
``a, b``                  raw                                          any sign
``v_th, v_reset``         :math:`v_\text{peak} - e^{\text{raw}}`       < v_peak
========================  ===========================================  =====================

``v_rest``, ``r`` and ``v_peak`` are fixed buffers (``r`` only rescales the input, which the
layer before learns; ``v_rest`` and ``v_peak`` fix the voltage scale). The layer's
``delta_t`` is always > 0, so a trained layer is never the exact LIF special case of the node.
:meth:`AdExLayer.to_node` exports the trained values as the IR node.

Default values are dimensionless (rest 0, soft threshold 1, cut-off 2, times in steps of
``dt = 1``), the scale a network's weights are initialised for.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from stac.ir.nodes.adex import ADEX_FIELDS, AdEx
from stac.sim.adex import AdExParams, AdExState, adex_scan
from stac.train.surrogate import DEFAULT_SLOPE, spike_fn

LEARNED = ("tau_m", "tau_w", "a", "b", "delta_t", "v_th", "v_reset")
FIXED = ("v_rest", "r", "v_peak")
_POSITIVE = ("tau_m", "tau_w", "delta_t")
_BELOW_PEAK = ("v_th", "v_reset")

#: Initial values when none are given (dimensionless units, see the module docstring).
DEFAULTS: dict[str, float] = {
    "tau_m": 10.0,
    "tau_w": 50.0,
    "a": 0.05,
    "b": 0.1,
    "delta_t": 0.2,
    "v_th": 1.0,
    "v_reset": 0.0,
    "v_rest": 0.0,
    "r": 1.0,
    "v_peak": 2.0,
}


class AdExLayer(nn.Module):
    """``n`` AdEx neurons with learnable dynamics; input and output ``[T, ..., n]``."""

    def __init__(
        self, n: int, dt: float = 1.0, slope: float = DEFAULT_SLOPE, **initial: Any
    ) -> None:
        super().__init__()
        unknown = set(initial) - set(ADEX_FIELDS)
        if unknown:
            raise ValueError(f"AdExLayer: unknown parameter(s) {sorted(unknown)}")
        if not dt > 0:
            raise ValueError(f"AdExLayer.dt must be > 0, got {dt}")
        values: dict[str, Any] = {
            k: np.broadcast_to(
                np.asarray(initial.get(k, DEFAULTS[k]), dtype=np.float64), (n,)
            ).copy()
            for k in ADEX_FIELDS
        }
        node = AdEx(**values)  # validates every field (shapes, signs, v_th < v_peak ...)
        if not np.all(node.delta_t > 0):
            raise ValueError(
                "AdExLayer.delta_t must be > 0 for every neuron (a trainable "
                "layer has no hard-threshold form)"
            )
        self.n, self.dt, self.slope = n, float(dt), float(slope)
        self._spike = spike_fn(slope)
        for k in FIXED:
            self.register_buffer(k, torch.as_tensor(values[k], dtype=torch.float32))
        peak = values["v_peak"]
        for k in LEARNED:
            raw = (
                np.log(values[k])
                if k in _POSITIVE
                else np.log(peak - values[k])
                if k in _BELOW_PEAK
                else values[k]
            )
            self.register_parameter(
                f"raw_{k}", nn.Parameter(torch.as_tensor(raw, dtype=torch.float32))
            )

    @classmethod
    def from_node(cls, node: AdEx, dt: float, slope: float = DEFAULT_SLOPE) -> "AdExLayer":
        """A layer initialised from an IR node (to fine-tune it)."""
        return cls(node.input_shape[0], dt, slope, **{k: getattr(node, k) for k in ADEX_FIELDS})

    def value(self, name: str) -> torch.Tensor:
        """The constrained value of one parameter (differentiable), shape (n,)."""
        if name in FIXED:
            buf: torch.Tensor = getattr(self, name)
            return buf
        raw: torch.Tensor = getattr(self, f"raw_{name}")
        if name in _POSITIVE:
            return raw.exp()
        if name in _BELOW_PEAK:
            return self.value("v_peak") - raw.exp()
        return raw

    def params(self) -> AdExParams:
        """All ten parameters, as :func:`stac.sim.adex.adex_step` takes them."""
        return AdExParams(*(self.value(k) for k in ADEX_FIELDS))

    def forward(
        self, x: torch.Tensor, state: AdExState | None = None
    ) -> tuple[torch.Tensor, AdExState]:
        """Spikes ``[T, ..., n]`` for input currents ``x`` ``[T, ..., n]``, and the final
        state (pass it back to continue a sequence)."""
        if x.shape[-1] != self.n:
            raise ValueError(f"AdExLayer: input has {x.shape[-1]} features, layer has {self.n}")
        return adex_scan(x, self.params(), self.dt, state, self._spike)

    def to_node(self) -> AdEx:
        """The trained neurons as the IR node (float64 arrays)."""
        with torch.no_grad():
            fields: dict[str, Any] = {
                k: self.value(k).double().cpu().numpy().copy() for k in ADEX_FIELDS
            }
        return AdEx(**fields)

    def extra_repr(self) -> str:
        return f"n={self.n}, dt={self.dt}, slope={self.slope}"


__all__ = ["DEFAULTS", "FIXED", "LEARNED", "AdExLayer"]
