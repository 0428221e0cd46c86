"""Static counts over a graph: multiply-accumulates per token and what drives them."""

from __future__ import annotations

from dataclasses import dataclass

import nir

from stac.ir.graph import predecessors, topo_order
from stac.ir.nodes import CausalSelfAttention, LoihiCubaLIF, SigmaDelta, SignedIF

#: Nodes that emit spikes, and weight-free maps that keep spikes spikes.
SPIKING_TYPES: tuple[type, ...] = (
    SignedIF,
    nir.LIF,
    nir.CubaLIF,
    nir.IF,
    nir.Threshold,
    SigmaDelta,
    LoihiCubaLIF,
)
EVENT_ROUTING_TYPES: tuple[type, ...] = (nir.Flatten, nir.SumPool2d)


def event_nodes(graph: nir.NIRGraph) -> set[str]:
    """Nodes whose output is spikes: spiking neurons, and routing maps fed only by spikes."""
    pre = predecessors(graph)
    events = {n for n, v in graph.nodes.items() if isinstance(v, SPIKING_TYPES)}
    changed = True
    while changed:
        changed = False
        for n, v in graph.nodes.items():
            if (
                n not in events
                and isinstance(v, EVENT_ROUTING_TYPES)
                and pre[n]
                and all(p in events for p in pre[n])
            ):
                events.add(n)
                changed = True
    return events


def connected_groups(graph: nir.NIRGraph, members: set[str]) -> list[list[str]]:
    """Weakly connected groups of ``members`` (edges between two members join them), each in
    graph order, groups ordered by their first node."""
    parent = {n: n for n in members}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for s, d in graph.edges:
        if s in parent and d in parent:
            parent[find(s)] = find(d)
    groups: dict[str, list[str]] = {}
    for n in graph.nodes:
        if n in parent:
            groups.setdefault(find(n), []).append(n)
    return list(groups.values())


@dataclass(frozen=True)
class OpRow:
    node: str
    type: str
    macs: int  # multiply-accumulates per token (attention at the stated context length)
    spike_driven: bool  # a linear map whose every input is spikes


def op_census(graph: nir.NIRGraph, context: int) -> list[OpRow]:
    """One row per node in data-flow order; attention counted at ``context`` keys per query."""
    pre = predecessors(graph)
    rows = []
    for name in topo_order(graph):
        node = graph.nodes[name]
        macs, spike = 0, False
        if isinstance(node, (nir.Linear, nir.Affine)):
            out_f, in_f = node.weight.shape
            macs = int(in_f) * int(out_f)
            spike = bool(pre[name]) and all(isinstance(graph.nodes[p], SignedIF) for p in pre[name])
        elif isinstance(node, CausalSelfAttention):
            macs = 2 * node.num_heads * node.head_dim * context
        rows.append(OpRow(name, type(node).__name__, macs, spike))
    return rows


def spike_driven_share(rows: list[OpRow]) -> float:
    total = sum(r.macs for r in rows)
    return sum(r.macs for r in rows if r.spike_driven) / total if total else 0.0
