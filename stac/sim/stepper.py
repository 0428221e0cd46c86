"""Step-by-step executor for NIR graphs in stac IR, recurrent ones included.

:class:`stac.sim.simulator.Simulator` runs the transformer graphs layer by layer over all T
steps and refuses cycles. NIR graphs (imported with :func:`stac.ir.nir_io.read_nir`) may have
recurrent edges, so this executor runs one timestep at a time over explicit per-node state
(:mod:`stac.sim.nir_neurons`). Nodes run in a depth-first order from the Input nodes; an edge
that closes a cycle (from a node at or after its destination in that order) delivers its
source's output from the *previous* step (zeros at step 0), as snnTorch's and Norse's
recurrent layers do. All other edges deliver the current step's value; a node's inputs are
summed (NIR semantics). Each timestep is one sweep of :class:`stac.sim.executor.Executor` with
the step table :data:`stac.sim.nir_neurons.STEPS`; the cycle-closing edges are its back edges.

Counts (:class:`stac.sim.semantics.NodeStats`), summed over the batch and all steps:
spiking neurons count ``spikes`` and ``neuron_updates``; non-spiking neurons count
``neuron_updates``; a linear map (Affine, Linear, Conv2d) whose inputs are all events (spikes,
or spikes routed through Flatten/SumPool2d) and that the partition placed on the chip (or
that is unplaced) counts ``synops`` = events x fan-out; any other linear map counts
``dense_macs``. Nodes not placed on the chip also count ``host_flops`` for the arithmetic a
host does for them (neuron updates, pooling, scaling).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F

from stac.errors import StacError
from stac.ir.graph import input_shape, output_shape, predecessors
from stac.ir.analysis import event_nodes
from stac.ir.nir_io.order import execution_order
from stac.ir.nir_io.supported import SPIKING, STATEFUL, SUPPORTED, type_list
from stac.ir.results import node_placement
from stac.sim.executor import Executor, check_supported, total
from stac.sim.nir_neurons import conv2d_geometry, initial_state, step
from stac.sim.semantics import NodeStats

_FLOPS_PER_UPDATE = {nir.LIF: 5, nir.CubaLIF: 9, nir.IF: 3, nir.LI: 4, nir.CubaLI: 8, nir.I: 2}


@dataclass
class StepResult:
    outputs: dict[str, torch.Tensor]  # Output-node name -> [T, B, *shape]
    traces: dict[str, torch.Tensor]  # recorded node -> [T, B, *shape] (spikes for neurons)
    stats: dict[str, NodeStats]


class Stepper:
    """Runs a NIR graph (stac IR) one timestep at a time. ``dt`` defaults to the graph's
    ``metadata["dt"]``."""

    def __init__(
        self, graph: nir.NIRGraph, dt: float | None = None, dtype: torch.dtype = torch.float32
    ) -> None:
        check_supported(graph.nodes, SUPPORTED, "the step executor", type_list())
        dt = graph.metadata.get("dt") if dt is None else dt
        if dt is None or not dt > 0:
            raise StacError("the graph has no time step: give dt (seconds) or set metadata['dt']")
        self.graph, self.dt, self.dtype = graph, float(dt), dtype
        self.order, self.back = execution_order(graph)
        self.pre = predecessors(graph)
        self.core = Executor(graph.nodes, self.order, self.pre, frozenset(self.back))
        self.events = event_nodes(graph)
        self.inputs = [n for n in self.order if isinstance(graph.nodes[n], nir.Input)]
        self._dry_run()

    def _dry_run(self) -> None:
        """Step every node once on zeros of its input shape, so that parameters that do not
        fit the node's shapes fail here with the node named, not deep inside a run."""
        for name, node in self.graph.nodes.items():
            shape, want = input_shape(node), output_shape(node)
            try:
                x = torch.zeros((1, *shape), dtype=self.dtype)
                out, _ = step(node, x, initial_state(node, (1, *want), self.dtype), self.dt)
            except Exception as exc:  # noqa: BLE001 - one clear line, naming the node
                raise StacError(
                    f"node {name!r} ({type(node).__name__}) cannot run on its input "
                    f"shape {shape}: {str(exc).splitlines()[0]}"
                ) from None
            if out[0].numel() != int(np.prod(want)):
                raise StacError(
                    f"node {name!r} ({type(node).__name__}) gives "
                    f"{tuple(out.shape[1:])} on input {shape}, but declares output "
                    f"{want}"
                )

    def _as_inputs(self, x: Any) -> dict[str, torch.Tensor]:
        if not isinstance(x, dict):
            if len(self.inputs) != 1:
                raise StacError(
                    f"the graph has {len(self.inputs)} Input nodes; pass a dict "
                    f"by name ({', '.join(self.inputs)})"
                )
            x = {self.inputs[0]: x}
        out = {}
        for name in self.inputs:
            if name not in x:
                raise StacError(f"no input given for Input node {name!r}")
            value = torch.as_tensor(
                np.asarray(x[name]) if not torch.is_tensor(x[name]) else x[name]
            ).to(self.dtype)
            shape = input_shape(self.graph.nodes[name])
            per = int(np.prod(shape))
            if value.ndim >= 1 and value[0].numel() == per:  # [T, *shape] -> one sample
                value = value.reshape(value.shape[0], 1, *shape)
            elif value.ndim >= 2 and value[0, 0].numel() == per:
                value = value.reshape(value.shape[0], value.shape[1], *shape)
            else:
                raise StacError(
                    f"input for {name!r} has shape {tuple(value.shape)}; expected "
                    f"[T, {', '.join(map(str, shape))}] or [T, B, "
                    f"{', '.join(map(str, shape))}]"
                )
            out[name] = value
        steps = {v.shape[:2] for v in out.values()}
        if len(steps) != 1:
            raise StacError(f"inputs disagree on (steps, batch): {sorted(steps)}")
        return out

    @torch.no_grad()
    def run(self, x: Any, steps: int | None = None, record: Any = "neurons") -> StepResult:
        """Run on ``x`` (``[T, *input_shape]`` or ``[T, B, *input_shape]``, or a dict by
        Input name); ``steps`` truncates or, past the input's end, pads with zeros.
        ``record``: "neurons" (spiking-neuron outputs), "all", or a list of node names."""
        xs = self._as_inputs(x)
        t_in, batch = next(iter(xs.values())).shape[:2]
        steps = int(t_in if steps is None else steps)
        g = self.graph
        if record == "neurons":
            keep = {n for n, v in g.nodes.items() if isinstance(v, STATEFUL + SPIKING)}
        elif record == "all":
            keep = set(g.nodes)
        else:
            keep = set(record)
            missing = keep - set(g.nodes)
            if missing:
                raise StacError(f"cannot record unknown node(s) {sorted(missing)}")
        shapes = {n: output_shape(v) for n, v in g.nodes.items()}
        state = {n: initial_state(v, (batch, *shapes[n]), self.dtype) for n, v in g.nodes.items()}
        prev = {n: torch.zeros((batch, *shapes[n]), dtype=self.dtype) for n in g.nodes}
        stats = {n: NodeStats() for n in g.nodes}
        traces: dict[str, list[torch.Tensor]] = {n: [] for n in keep}
        outputs: dict[str, list[torch.Tensor]] = {
            n: [] for n, v in g.nodes.items() if isinstance(v, nir.Output)
        }

        def run_node(t: int, name: str, node: Any, inputs: list[torch.Tensor]) -> torch.Tensor:
            if isinstance(node, nir.Input):
                inp = xs[name][t] if t < t_in else torch.zeros_like(xs[name][0])
            else:
                want = input_shape(node)
                inp = total([v.reshape(batch, *want) for v in inputs])
            out, state[name] = step(node, inp, state[name], self.dt)
            self._count(name, node, inp, out, stats[name])
            if name in keep:
                traces[name].append(out)
            if name in outputs:
                outputs[name].append(out)
            return out

        for t in range(steps):
            prev = self.core.sweep(partial(run_node, t), prev)
        stack = lambda seq, n: torch.stack(seq) if seq else torch.zeros((0, batch, *shapes[n]))  # noqa: E731
        return StepResult(
            {n: stack(v, n) for n, v in outputs.items()},
            {n: stack(v, n) for n, v in traces.items()},
            stats,
        )

    def _count(
        self, name: str, node: Any, inp: torch.Tensor, out: torch.Tensor, s: NodeStats
    ) -> None:
        placed = node_placement(node)
        on_chip = placed is not None and placed.on_chip
        host = 0  # arithmetic a host does for this node (charged only when not on chip)
        if isinstance(node, STATEFUL):
            s.neuron_updates += out.numel()
            host = _FLOPS_PER_UPDATE[type(node)] * out.numel()
            if isinstance(node, SPIKING):
                s.spikes += int(torch.count_nonzero(out))
        elif isinstance(node, nir.Threshold):
            s.spikes += int(torch.count_nonzero(out))
            host = out.numel()
        elif isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
            unplaced = placed is None
            spike_fed = all(p in self.events for p in self.pre[name])
            if spike_fed and (on_chip or unplaced):
                s.synops += self._synops(node, inp)
            else:
                s.dense_macs += self._macs(node, out)
        elif isinstance(node, (nir.Scale, nir.SumPool2d, nir.AvgPool2d)):
            host = out.numel()
        if not on_chip:
            s.host_flops += host

    @staticmethod
    def _macs(node: Any, out: torch.Tensor) -> int:
        if isinstance(node, nir.Conv2d):
            w = np.asarray(node.weight)
            return int(out.numel() * w[0].size)
        return int(out.shape[0] * np.asarray(node.weight).size)

    @staticmethod
    def _synops(node: Any, inp: torch.Tensor) -> int:
        """Events x fan-out: for a dense map each nonzero input reaches every output; for a
        convolution the exact count of (input event, output position) pairs it reaches."""
        if isinstance(node, nir.Conv2d):
            mask = (inp != 0).to(torch.float32)
            ones = torch.ones(np.asarray(node.weight).shape)
            return int(F.conv2d(mask, ones, None, **conv2d_geometry(node)).sum())
        return int(torch.count_nonzero(inp)) * int(np.asarray(node.weight).shape[0])


__all__ = ["StepResult", "Stepper", "event_nodes"]
