"""Execution order of a NIR graph that may have cycles (recurrent connections).

:func:`stac.ir.topo_order` refuses cycles; NIR graphs exported by snnTorch, Norse or the NIR
paper's braille model close loops through a neuron's output. Here a cycle is cut where it
leaves a stateful neuron, so a step-by-step executor knows which edges carry the previous
step's value.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import nir

from stac.ir.graph import make_graph, successors, topo_order
from stac.ir.nir_io.supported import STATEFUL


def order_allowing_cycles(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> list[str]:
    """Depth-first reverse post-order from the Input nodes (then from any node left over).
    Every edge points forward except those that close a cycle (back edges)."""
    post: dict[str, list[str]] = defaultdict(list)
    for s, d in edges:
        post[s].append(d)
    starts = [n for n, v in nodes.items() if isinstance(v, nir.Input)] + list(nodes)
    seen: set[str] = set()
    finished: list[str] = []
    for start in starts:
        if start in seen:
            continue
        seen.add(start)
        stack = [(start, iter(post[start]))]
        while stack:
            name, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                finished.append(name)
            elif nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, iter(post[nxt])))
    return finished[::-1]


def _reaches(post: dict[str, list[str]], start: str, goal: str) -> bool:
    seen, stack = {start}, [start]
    while stack:
        n = stack.pop()
        if n == goal:
            return True
        for m in post[n]:
            if m not in seen:
                seen.add(m)
                stack.append(m)
    return False


def execution_order(graph: nir.NIRGraph) -> tuple[list[str], set[tuple[str, str]]]:
    """An order for step-by-step execution and the set of back edges (edges that deliver the
    previous step's value because they close a cycle).

    A cycle is cut at the output of a stateful neuron: every edge on a cycle whose source is
    a neuron (LIF, CubaLIF, IF, LI, CubaLI, I) delivers last step's output, so a recurrent
    weight ``w_rec`` runs in the current step on last step's spikes (its bias included at
    step 0), as in snnTorch's RLeaky/RSynaptic. Cycles without a neuron are cut where a
    depth-first search from the inputs closes them.
    """
    post = successors(graph)
    cut = {
        (s, d)
        for s, d in graph.edges
        if isinstance(graph.nodes[s], STATEFUL) and _reaches(post, d, s)
    }
    try:
        order = topo_order(make_graph(graph.nodes, [e for e in graph.edges if e not in cut]))
    except ValueError:  # a cycle without a neuron on it
        order = order_allowing_cycles(graph.nodes, list(graph.edges))
    pos = {n: i for i, n in enumerate(order)}
    back = {(s, d) for s, d in graph.edges if pos[s] >= pos[d]}
    return order, back


__all__ = ["execution_order", "order_allowing_cycles"]
