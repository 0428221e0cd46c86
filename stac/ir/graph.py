"""The IR graph: an ``nir.NIRGraph`` holding NIR nodes and stac nodes, and its checks.

Edges follow NIR: a node's incoming edges are summed at its input. Shapes are per token and
exclude the time axis.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

import nir
import numpy as np

from stac.ir.nodes import StacNode

Node = Any  # an nir.NIRNode or a StacNode


def make_graph(
    nodes: Mapping[str, Node], edges: Sequence[tuple[str, str]], metadata: dict | None = None
) -> nir.NIRGraph:
    """Build the graph without NIR's type inference (it does not know stac nodes)."""
    return nir.NIRGraph(
        nodes=dict(nodes), edges=list(edges), metadata=dict(metadata or {}), type_check=False
    )


def _shape(types: Any, key: str) -> tuple[int, ...]:
    value = types[key] if isinstance(types, dict) else types
    return tuple(int(v) for v in np.asarray(value).reshape(-1))


def input_shape(node: Node) -> tuple[int, ...]:
    if isinstance(node, StacNode):
        return node.input_shape
    return _shape(node.input_type, "input")


def output_shape(node: Node) -> tuple[int, ...]:
    if isinstance(node, StacNode):
        return node.output_shape
    return _shape(node.output_type, "output")


def predecessors(graph: nir.NIRGraph) -> dict[str, list[str]]:
    pre: dict[str, list[str]] = defaultdict(list)
    for src, dst in graph.edges:
        pre[dst].append(src)
    return pre


def successors(graph: nir.NIRGraph) -> dict[str, list[str]]:
    post: dict[str, list[str]] = defaultdict(list)
    for src, dst in graph.edges:
        post[src].append(dst)
    return post


def topo_order(graph: nir.NIRGraph) -> list[str]:
    """Nodes in an order where every edge points forward; raises on a cycle."""
    indeg = {name: 0 for name in graph.nodes}
    post = successors(graph)
    for _, dst in graph.edges:
        indeg[dst] += 1
    ready = [name for name, d in indeg.items() if d == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for nxt in post[name]:
            indeg[nxt] -= 1
            if indeg[nxt] == 0:
                ready.append(nxt)
    if len(order) != len(graph.nodes):
        stuck = sorted(set(graph.nodes) - set(order))
        raise ValueError(f"graph has a cycle through node(s) {stuck[:5]}")
    return order


class VerifyError(ValueError):
    """The graph breaks a structural rule; the message names the node or edge."""


def _check_finite(name: str, node: Node) -> None:
    fields = node.to_dict() if hasattr(node, "to_dict") else {}
    for key, value in fields.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            if not np.all(np.isfinite(value)):
                raise VerifyError(f"node {name!r} ({type(node).__name__}): {key} has NaN or inf")


def verify(graph: nir.NIRGraph, where: str = "") -> nir.NIRGraph:
    """Check edges, shapes, inputs and outputs, acyclicity and finite parameters.

    Returns the graph unchanged so that it can sit between passes.
    """
    prefix = f"after {where}: " if where else ""
    names = set(graph.nodes)
    seen: set[tuple[str, str]] = set()
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in names:
                raise VerifyError(f"{prefix}edge ({src!r} -> {dst!r}) names missing node {end!r}")
        if (src, dst) in seen:
            raise VerifyError(f"{prefix}duplicate edge ({src!r} -> {dst!r})")
        seen.add((src, dst))
    try:
        topo_order(graph)
    except ValueError as exc:
        raise VerifyError(f"{prefix}{exc}") from None
    pre = predecessors(graph)
    post = successors(graph)
    if not any(isinstance(n, nir.Input) for n in graph.nodes.values()):
        raise VerifyError(f"{prefix}graph has no Input node")
    if not any(isinstance(n, nir.Output) for n in graph.nodes.values()):
        raise VerifyError(f"{prefix}graph has no Output node")
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.Input) and not pre[name]:
            raise VerifyError(f"{prefix}node {name!r} ({type(node).__name__}) has no input edge")
        if not isinstance(node, nir.Output) and not post[name]:
            raise VerifyError(f"{prefix}node {name!r} ({type(node).__name__}) has no output edge")
        want = int(np.prod(input_shape(node)))
        for src in pre[name]:
            got = int(np.prod(output_shape(graph.nodes[src])))
            if got != want:
                raise VerifyError(
                    f"{prefix}shape mismatch on edge {src!r} -> {name!r}: "
                    f"{src} gives {output_shape(graph.nodes[src])}, "
                    f"{name} ({type(node).__name__}) takes {input_shape(node)}"
                )
        _check_finite(name, node)
    return graph
