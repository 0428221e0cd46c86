"""stac's reference simulator: runs an IR graph on tokens over T timesteps."""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch

from stac.errors import StacError
from stac.ir.graph import predecessors, successors, topo_order
from stac.sim.semantics import LINEAR_TYPES, SEMANTICS, STEPPED_INPUT, NodeStats, RunContext, \
    Semantics
from stac.sim.signal import Signal


class Simulator:
    """Executes a graph with the semantics of :mod:`stac.sim.semantics`.

    Parameters are turned into torch tensors once (shared arrays stay shared). Unknown node
    types are refused up front, naming the node. ``overrides`` maps node names to functions
    with the signature of :data:`stac.sim.semantics.SEMANTICS` entries that run those nodes
    instead (a backend executing part of the graph elsewhere, such as Lava, and the host ops
    here).
    """

    def __init__(self, graph: nir.NIRGraph,
                 overrides: dict[str, Semantics] | None = None) -> None:
        unknown = [
            f"{name} ({type(node).__name__})"
            for name, node in graph.nodes.items()
            if type(node) not in SEMANTICS
        ]
        if unknown:
            raise StacError(
                f"the simulator has no semantics for node(s) {', '.join(unknown)}; "
                f"supported types: {', '.join(sorted(t.__name__ for t in SEMANTICS))}"
            )
        self.graph = graph
        self.overrides = dict(overrides or {})
        self.order = topo_order(graph)
        self.pre = predecessors(graph)
        self.need_steps = self._need_steps(successors(graph))
        self._tensors: dict[int, torch.Tensor] = {}

    def _need_steps(self, post: dict[str, list[str]]) -> dict[str, bool]:
        need: dict[str, bool] = {}
        for name in reversed(self.order):
            need[name] = any(
                isinstance(self.graph.nodes[s], STEPPED_INPUT)
                or (isinstance(self.graph.nodes[s], LINEAR_TYPES) and need[s])
                for s in post[name]
            )
        return need

    def param(self, array: Any) -> torch.Tensor:
        key = id(array)
        if key not in self._tensors:
            self._tensors[key] = torch.as_tensor(np.asarray(array, dtype=np.float32))
        return self._tensors[key]

    @torch.no_grad()
    def run(self, ctx: RunContext) -> tuple[dict[str, torch.Tensor], dict[str, NodeStats]]:
        """Return the graph's outputs (accumulated values, ``[B, N, F]``) and per-node stats."""
        ctx.params = self.param
        if ctx.positions is None:
            past = _past_length(ctx)
            n = ctx.token_ids.shape[1]
            ctx.positions = torch.arange(past, past + n).expand_as(ctx.token_ids)
        values: dict[str, Signal] = {}
        stats: dict[str, NodeStats] = {}
        consumers: dict[str, int] = {}
        for src, _ in self.graph.edges:
            consumers[src] = consumers.get(src, 0) + 1
        outputs: dict[str, torch.Tensor] = {}
        for name in self.order:
            node = self.graph.nodes[name]
            inputs = [values[p] for p in self.pre[name]]
            inp = inputs[0] if inputs else Signal(torch.zeros(0), False)
            for extra in inputs[1:]:
                inp = inp + extra
            run = self.overrides.get(name) or SEMANTICS[type(node)]
            out, stats[name] = run(node, inp, ctx, name, self.need_steps[name])
            for p in self.pre[name]:  # free what no later node reads
                consumers[p] -= 1
                if consumers[p] == 0:
                    del values[p]
            if isinstance(node, nir.Output):
                outputs[name] = out.value
            else:
                values[name] = out
        return outputs, stats


def _past_length(ctx: RunContext) -> int:
    for k, _ in ctx.kv_cache.values():
        return int(k.shape[2])
    return 0
