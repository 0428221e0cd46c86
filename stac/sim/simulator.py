"""stac's reference simulator: runs an IR graph on tokens over T timesteps."""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch

from stac.errors import StacError
from stac.ir.graph import predecessors, successors, topo_order
from stac.sim.executor import Executor, check_supported, total
from stac.sim.semantics import (
    LINEAR_TYPES,
    SEMANTICS,
    STEPPED_INPUT,
    NodeStats,
    RunContext,
    Semantics,
)
from stac.sim.signal import Signal


class Simulator:
    """Executes a graph with the semantics of :mod:`stac.sim.semantics`, each node once over
    all T steps (one sweep of :class:`stac.sim.executor.Executor`).

    Parameters are turned into torch tensors once (shared arrays stay shared). Unknown node
    types are refused up front, naming the node. ``overrides`` maps node names to functions
    with the signature of :data:`stac.sim.semantics.SEMANTICS` entries that run those nodes
    instead (a backend executing part of the graph elsewhere, such as Lava, and the host ops
    here). ``dtype`` is the precision parameters are held in (the arithmetic follows them);
    float32 by default, float64 for checks that must not depend on the order of float sums.
    """

    def __init__(
        self,
        graph: nir.NIRGraph,
        overrides: dict[str, Semantics] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        check_supported(graph.nodes, SEMANTICS, "the simulator")
        self.graph = graph
        self.overrides = dict(overrides or {})
        self.order = topo_order(graph)
        self.pre = predecessors(graph)
        self.core = Executor(graph.nodes, self.order, self.pre)
        self.need_steps = self._need_steps(successors(graph))
        self._tensors: dict[int, torch.Tensor] = {}
        self.dtype = dtype

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
            self._tensors[key] = torch.as_tensor(np.asarray(array)).to(self.dtype)
        return self._tensors[key]

    @torch.no_grad()
    def run(self, ctx: RunContext) -> tuple[dict[str, torch.Tensor], dict[str, NodeStats]]:
        """Return the graph's outputs (accumulated values, ``[B, N, F]``) and per-node stats."""
        ctx.params = self.param
        if ctx.positions is None:
            past = _past_length(ctx)
            n = ctx.token_ids.shape[1]
            ctx.positions = torch.arange(past, past + n).expand_as(ctx.token_ids)
        stats: dict[str, NodeStats] = {}

        def run_node(name: str, node: Any, inputs: list[Signal]) -> Signal:
            inp = total(inputs, Signal(torch.zeros(0), False))
            semantics = self.overrides.get(name) or SEMANTICS[type(node)]
            try:
                out, stats[name] = semantics(node, inp, ctx, name, self.need_steps[name])
            except (RuntimeError, ValueError, IndexError) as exc:  # a graph that does not fit
                shape = tuple(inp.value.shape)
                raise StacError(
                    f"node {name!r} ({type(node).__name__}) cannot run on its input of shape "
                    f"{shape}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                ) from None
            return out

        values = self.core.sweep(run_node, free=True)
        outputs = {
            name: values[name].value
            for name in self.order
            if isinstance(self.graph.nodes[name], nir.Output)
        }
        return outputs, stats


def _past_length(ctx: RunContext) -> int:
    for k, _ in ctx.kv_cache.values():
        return int(k.shape[2])
    return 0
