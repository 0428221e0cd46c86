"""A converted graph as a differentiable torch module: stac's forward, surrogate backward.

:class:`GraphNet` runs an IR graph with the simulator's own pieces (the executor core and
:data:`stac.sim.semantics.SEMANTICS`), so every node computes what ``stac eval`` computes, with
two differences that only touch the backward pass:

* parameters are torch tensors that learn: every Affine/Linear weight (and bias) and every
  SignedIF threshold. A weight the graph stores quantised (``metadata["quant"]`` with ``bits``
  and a per-row ``scale``) is fake-quantised in the forward pass: ``clamp(round(W / s), -q, q)
  * s`` with ``q = 2**(bits-1) - 1`` and the straight-through estimator backward, so the
  trained weight lands on the grid the quantise pass carries. A graded encoder's threshold
  stays ``T`` times a power of two (full mode's rule; rounded to the nearest power in log2,
  straight-through); a binary or held-drive encoder's threshold is any positive number.
* a SignedIF runs stac's scan (:func:`stac.sim.neurons.signed_if_scan`) exactly and adds a
  zero whose gradient is the surrogate of its quantiser (:func:`stac.train.surrogate.
  staircase_grad`): with ``u = T x / theta`` (x the drive's mean), the T-step mean output is
  ``clamp(floor(u + 1/2), -T K, T K) theta / T``, a staircase in u.

Spike counts come out exactly (nonzero payloads per neuron) with a surrogate gradient too, for
an L1 penalty on them. A :class:`~stac.ir.nodes.Readout` rounds straight-through, and the export
keeps its shift and recomputes its step from the trained weight scales and thresholds.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from stac.errors import StacError
from stac.ir.graph import make_graph, predecessors, successors, topo_order
from stac.ir.nodes import Readout, Residual, SignedIF
from stac.ir.passes.common import replace_fields
from stac.sim.executor import Executor, check_supported, total
from stac.sim.neurons import signed_if_scan, token_gain
from stac.sim.semantics import (
    LINEAR_TYPES,
    SEMANTICS,
    STEPPED_INPUT,
    RunContext,
)
from stac.sim.signal import Signal
from stac.train.surrogate import round_ste, staircase_grad, superspike

WEIGHTED = (nir.Affine, nir.Linear)
log = logging.getLogger(__name__)


@dataclass
class Pass:
    """What one forward pass returns besides the logits."""

    counts: dict[str, torch.Tensor] = field(default_factory=dict)  # spikes [B, N, F] per encoder
    hidden: dict[str, torch.Tensor] = field(default_factory=dict)  # recorded node values
    neurons: int = 0  # encoder neurons per token


def _key(name: str, what: str) -> str:
    return f"{name}__{what}"  # ParameterDict keys may not hold dots


def _fake_quant(w: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    qmax = 2 ** (bits - 1) - 1
    return round_ste(w / scale).clamp(-qmax, qmax) * scale


class GraphNet(nn.Module):
    """A differentiable forward of ``graph`` (see the module docstring).

    ``learn``: which parameters train ("weights", "thresholds", "dead_zones"); ``slope``: the
    surrogate's SuperSpike slope per unit of u (one level of the quantiser). ``dead_zones``:
    every encoder runs with a dead zone (:mod:`stac.train.deadzone`), its own or, where it has
    none, the no-op ``theta / 2``; otherwise only encoders that have one do.
    """

    def __init__(
        self,
        graph: nir.NIRGraph,
        learn: tuple[str, ...] = ("weights", "thresholds"),
        dead_zones: bool = False,
        slope: float = 2.0,
        payload_bits: int | None = None,
    ) -> None:
        super().__init__()
        check_supported(graph.nodes, SEMANTICS, "the differentiable forward")
        self.graph, self.slope, self.payload_bits = graph, slope, payload_bits
        self.order = topo_order(graph)
        self.pre = predecessors(graph)
        self.core = Executor(graph.nodes, self.order, self.pre)
        post = successors(graph)
        self.need: dict[str, bool] = {}
        for name in reversed(self.order):
            self.need[name] = any(
                isinstance(graph.nodes[s], STEPPED_INPUT)
                or (isinstance(graph.nodes[s], LINEAR_TYPES) and self.need[s])
                for s in post[name]
            )
        self.params = nn.ParameterDict()
        self.frozen: dict[int, torch.Tensor] = {}
        self._scales: dict[str, tuple[torch.Tensor, int]] = {}
        self._arrays: dict[int, str] = {}  # id(array) -> parameter key
        self.encoders = [k for k, v in graph.nodes.items() if isinstance(v, SignedIF)]
        for name, node in graph.nodes.items():
            if isinstance(node, WEIGHTED):
                self._add_weight(name, node, "weights" in learn)
            elif isinstance(node, SignedIF):
                theta = torch.as_tensor(np.asarray(node.threshold, np.float32))
                self.register_buffer(_key(name, "threshold0"), theta.clone())
                self.params[_key(name, "log_threshold")] = nn.Parameter(
                    torch.zeros_like(theta), requires_grad="thresholds" in learn
                )
                if dead_zones or node.dead_zone is not None or "dead_zones" in learn:
                    dz = theta / 2 if node.dead_zone is None else node.dead_zone
                    dz = torch.as_tensor(np.asarray(dz, np.float32)).clamp_min(1e-30)
                    self.register_buffer(_key(name, "dead_zone0"), dz.clone())
                    self.params[_key(name, "log_dead_zone")] = nn.Parameter(
                        torch.zeros_like(theta), requires_grad="dead_zones" in learn
                    )
        self.capture: dict[str, list[torch.Tensor]] | None = None  # |T x| per encoder

    def _add_weight(self, name: str, node: Any, learn: bool) -> None:
        quant = (node.metadata or {}).get("quant") or {}
        if quant.get("folded"):
            raise StacError(
                f"{name}: its weights hold the spike values of the encoder before it (folded); "
                "fine-tuning keeps no grid for them: convert for a target with graded spikes"
            )
        w = torch.as_tensor(np.asarray(node.weight, np.float32)).clone()
        self.register_buffer(_key(name, "weight0"), w.clone())
        self.params[_key(name, "weight")] = nn.Parameter(w, requires_grad=learn)
        self._arrays[id(node.weight)] = _key(name, "weight")
        if "scale" in quant and "bits" in quant:
            scale = torch.as_tensor(np.asarray(quant["scale"], np.float32)).reshape(-1, 1)
            self._scales[name] = (scale, int(quant["bits"]))
        if isinstance(node, nir.Affine):
            b = torch.as_tensor(np.asarray(node.bias, np.float32)).clone()
            self.params[_key(name, "bias")] = nn.Parameter(b, requires_grad=learn)
            self._arrays[id(node.bias)] = _key(name, "bias")

    # --- parameters as the forward pass sees them ---------------------------------------------

    def weight(self, name: str) -> torch.Tensor:
        w = self.params[_key(name, "weight")]
        if name in self._scales:
            scale, bits = self._scales[name]
            w0 = getattr(self, _key(name, "weight0"))
            # w0 plus the grid steps w moved: exactly the stored weight until it moves
            return w0 + (_fake_quant(w, scale, bits) - _fake_quant(w0, scale, bits))
        return w

    def threshold(self, name: str, steps: int) -> torch.Tensor:
        node: SignedIF = self.graph.nodes[name]
        theta = (
            getattr(self, _key(name, "threshold0")) * self.params[_key(name, "log_threshold")].exp()
        )
        if node.onset_drive and node.max_payload > 1:  # graded: T times a power of two
            # rounded to the nearest power in log2: a threshold starts exactly on one, so it
            # changes only once its parameter has moved half an octave (a floor would halve
            # every threshold whose first step is downward: half of SmolLM2's did in step 1)
            step = torch.log2(theta / steps)
            theta = steps * torch.exp2(step + (torch.round(step) - step).detach())
        return theta

    def dead_zone(self, name: str, theta: torch.Tensor) -> torch.Tensor | None:
        """The encoder's dead zone at thresholds ``theta``, or None where it has none:
        ``d0 exp(r)`` snapped (straight-through) to the chip's grid ``(D - 1/2) theta``,
        D >= 1 an integer (:func:`stac.sim.neurons.dead_zone_levels`; D = 1 is no dead zone)."""
        key = _key(name, "log_dead_zone")
        if key not in self.params:
            return None
        dz = getattr(self, _key(name, "dead_zone0")) * self.params[key].exp()
        levels = torch.round(dz.detach() / theta.detach() + 0.5).clamp_min(1.0)
        return dz + ((levels - 0.5) * theta.detach() - dz).detach()

    def payload(self, name: str, theta: torch.Tensor) -> int:
        """K of a graded encoder at thresholds ``theta``: its own, or less where a per-layer
        payload (a count shifted by its channel's exponent, ``K theta_max / theta_min``) would
        no longer fit the target's ``payload_bits`` once the thresholds have moved apart (as
        conversion caps it)."""
        node: SignedIF = self.graph.nodes[name]
        k = int(node.max_payload)
        if k == 1 or self.payload_bits is None or node.per_channel_payload:
            return k
        theta = theta.detach()
        spread = float(theta.max() / theta.min())
        return max(min(k, int((2 ** (self.payload_bits - 1) - 1) // spread)), 1)

    def _param(self, array: Any) -> torch.Tensor:
        key = self._arrays.get(id(array))
        if key is not None:
            name, what = key.rsplit("__", 1)
            return self.weight(name) if what == "weight" else self.params[key]
        if id(array) not in self.frozen:
            device = next(iter(self.params.values())).device
            self.frozen[id(array)] = torch.as_tensor(np.asarray(array, np.float32), device=device)
        return self.frozen[id(array)]

    def _apply(self, fn: Any, recurse: bool = True) -> "GraphNet":
        self.frozen.clear()  # re-made on the new device at first use
        self._scales = {k: (fn(s), b) for k, (s, b) in self._scales.items()}
        return super()._apply(fn, recurse)  # type: ignore[return-value]

    # --- the forward pass ---------------------------------------------------------------------

    def _encoder(
        self, name: str, node: SignedIF, inp: Signal, ctx: RunContext, out: Pass
    ) -> Signal:
        steps = ctx.steps
        theta = self.threshold(name, steps)
        dz = self.dead_zone(name, theta)
        x = inp.mean()
        k = self.payload(name, theta)
        if node.token_gain:
            gain = token_gain(x, theta, node.gain_ratio, node.gain_floor)
            theta = theta * gain
            dz = None if dz is None else dz * gain
        if self.capture is not None:
            self.capture.setdefault(name, []).append((steps * x).detach().abs().flatten(0, -2))
        with torch.no_grad():
            value, th = inp.value.detach(), theta.detach()
            spikes = signed_if_scan(
                value,
                th,
                steps,
                inp.per_step,
                k,
                node.onset_drive,
                None if dz is None else dz.detach(),
            )
            exact = spikes * th
            level = spikes.sum(0)
            count = (spikes != 0).sum(0).to(x.dtype)
        u = steps * x / theta
        cap = float(steps * k)
        rise = staircase_grad(u, cap, self.slope)
        rise_count = staircase_grad(u, cap, self.slope, period=k, odd=False)
        if dz is None:
            grad = (level + rise) * theta / steps
            counted = count + rise_count
        else:
            # through the mask m = [T x outside [-d, d)]: SuperSpike on |u| - d / theta (in
            # levels); the neuron's output is m times its output without the dead zone
            with torch.no_grad():
                free = signed_if_scan(value, th, steps, inp.per_step, k, node.onset_drive)
                level_free = free.sum(0)
                count_free = (free != 0).sum(0).to(x.dtype)
                passed = (level != 0) | (level_free == 0)
            edge = superspike(u.abs() - dz / theta, self.slope)
            edge = edge - edge.detach()
            grad = (level + passed * rise + edge * level_free) * theta / steps
            counted = count + passed * rise_count + edge * count_free
        grad = grad - grad.detach()  # zero in value: the forward stays stac's to the bit
        out.counts[name] = counted
        if self.need[name]:
            return Signal(exact + grad, True, events=True)
        return Signal(exact.mean(0) + grad, False, events=True)

    def forward(
        self,
        token_ids: torch.Tensor,
        steps: int,
        spiking: bool = True,
        record: tuple[str, ...] = (),
    ) -> tuple[torch.Tensor, Pass]:
        """Logits ``[B, N, vocab]`` of the graph's Output and a :class:`Pass`."""
        device = token_ids.device
        ctx = RunContext(token_ids, steps=steps, spiking=spiking, params=self._param)
        ctx.positions = torch.arange(token_ids.shape[1], device=device).expand_as(token_ids)
        out = Pass()
        wanted = set(record)

        def run_node(name: str, node: Any, inputs: list[Signal]) -> Signal:
            inp = total(inputs, Signal(torch.zeros(0, device=device), False))
            if isinstance(node, SignedIF):
                out.neurons += int(node.threshold.size)
                value = self._encoder(name, node, inp, ctx, out) if spiking else inp
            else:
                value, _ = SEMANTICS[type(node)](node, inp, ctx, name, self.need[name])
                if isinstance(node, Readout):  # rounding and saturation straight-through
                    x = inp.mean()
                    value = Signal(x + (value.value - x).detach(), False)
            if name in wanted:
                out.hidden[name] = value.mean()
            return value

        with torch.device(device):  # the semantics make index tensors on the default device
            values = self.core.sweep(run_node, free=True)
        outputs = [n for n in self.order if isinstance(self.graph.nodes[n], nir.Output)]
        if len(outputs) != 1:
            raise StacError(f"fine-tuning needs one Output node, the graph has {len(outputs)}")
        return values[outputs[0]].value, out

    def residuals(self) -> tuple[str, ...]:
        """The graph's Residual nodes (the residual stream), for hidden-state matching."""
        return tuple(n for n in self.order if isinstance(self.graph.nodes[n], Residual))

    # --- back to the IR -----------------------------------------------------------------------

    @torch.no_grad()
    def export(self, steps: int) -> nir.NIRGraph:
        """The graph with the trained values (weights on their grid, thresholds as the forward
        pass at ``steps`` used them); metadata and every other array carried over."""
        nodes = dict(self.graph.nodes)
        for name, node in self.graph.nodes.items():
            if isinstance(node, WEIGHTED):
                fields: dict[str, Any] = {
                    "weight": self.weight(name).cpu().numpy().astype(np.asarray(node.weight).dtype)
                }
                if isinstance(node, nir.Affine):
                    fields["bias"] = self.params[_key(name, "bias")].cpu().numpy()
                nodes[name] = replace_fields(node, **fields)
            elif isinstance(node, SignedIF):
                theta = self.threshold(name, steps)
                k = self.payload(name, theta)
                if k < int(node.max_payload):
                    log.warning(
                        "%s: its trained thresholds spread wider; payload capped from %d to %d "
                        "to fit %d bits",
                        name,
                        int(node.max_payload),
                        k,
                        self.payload_bits,
                    )
                extra: dict[str, Any] = {}
                dz = self.dead_zone(name, theta)
                if dz is not None:
                    extra["dead_zone"] = dz.cpu().numpy().astype(np.float32)
                nodes[name] = replace_fields(
                    node, threshold=theta.cpu().numpy().astype(np.float32), max_payload=k, **extra
                )
        out = make_graph(nodes, self.graph.edges, self.graph.metadata)
        return _restep_readouts(out) if any(isinstance(v, Readout) for v in nodes.values()) else out


def _restep_readouts(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Each Readout's step from its map's trained accumulator unit, at the same shift."""
    from stac.frontend.readout import accumulator_unit

    pre = predecessors(graph)
    nodes = dict(graph.nodes)
    for name, node in graph.nodes.items():
        if isinstance(node, Readout):
            shift = int((node.metadata or {}).get("shift", 0))
            step = accumulator_unit(graph, pre[name][0]) * 2.0**shift
            nodes[name] = replace_fields(node, step=step)
    return make_graph(nodes, graph.edges, graph.metadata)


def spikes_per_token(counts: dict[str, torch.Tensor], tokens: int) -> float:
    return float(sum(float(c.detach().sum()) for c in counts.values())) / max(tokens, 1)


def spike_rate(counts: dict[str, torch.Tensor], neurons: int, tokens: int, steps: int) -> float:
    """Nonzero spikes per neuron-step (the figure ``stac eval`` reports)."""
    updates = neurons * tokens * steps
    return spikes_per_token(counts, 1) / updates if updates else math.nan


__all__ = ["GraphNet", "Pass", "spike_rate", "spikes_per_token"]
