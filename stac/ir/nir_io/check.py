"""Checks of NIR nodes and graphs in stac IR, each failure one :class:`StacError` naming the
file, the node (or edge) and the problem.

:func:`check_params` checks one node's parameters: finite values, positive time constants,
and parameter shapes that agree with each other (an Affine's bias against its weight, a
convolution's kernel against its channels, pooling windows). :func:`check_graph` is the
structural check for NIR graphs: like :func:`stac.ir.verify`, but it allows cycles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import nir
import numpy as np

from stac.errors import StacError
from stac.ir.graph import input_shape, output_shape, predecessors, successors
from stac.ir.nodes import StacNode

_ARRAY_FIELDS_SKIP = {"input_type", "output_type", "metadata"}


def fail(path: Path | str, msg: str) -> StacError:
    return StacError(f"NIR file {path}: {msg}")


def _dense_shapes(node: nir.Affine | nir.Linear) -> str | None:
    w = np.asarray(node.weight)
    if w.ndim != 2:
        return f"weight must be 2-D (outputs, inputs), got shape {w.shape}"
    if isinstance(node, nir.Affine) and np.asarray(node.bias).shape != (w.shape[0],):
        return (
            f"bias has shape {np.asarray(node.bias).shape}, but weight {w.shape} has "
            f"{w.shape[0]} outputs"
        )
    return None


def _window(node: Any, fields: tuple[str, ...], minimum: int) -> str | None:
    for key in fields:
        value = np.asarray(getattr(node, key))
        if value.dtype.kind in "iuf" and not np.all(value >= minimum):
            return f"{key} must be >= {minimum}, got {value.tolist()}"
    return None


def _conv_shapes(node: nir.Conv2d) -> str | None:
    w, b = np.asarray(node.weight), np.asarray(node.bias)
    if w.ndim != 4:
        return f"weight must be 4-D (out, in / groups, height, width), got shape {w.shape}"
    if b.shape != (w.shape[0],):
        return f"bias has shape {b.shape}, but weight {w.shape} has {w.shape[0]} output channels"
    groups = int(node.groups)
    if groups < 1 or w.shape[0] % groups:
        return f"groups={groups} does not divide the {w.shape[0]} output channels"
    return _window(node, ("stride", "dilation"), 1)


def _pool_shapes(node: nir.SumPool2d | nir.AvgPool2d) -> str | None:
    return _window(node, ("kernel_size", "stride"), 1) or _window(node, ("padding",), 0)


#: Per node type, its time constants (seconds): each must be > 0, and dt must not exceed it.
TIME_CONSTANTS: dict[type, tuple[str, ...]] = {
    nir.LIF: ("tau",),
    nir.LI: ("tau",),
    nir.CubaLIF: ("tau_mem", "tau_syn"),
    nir.CubaLI: ("tau_mem", "tau_syn"),
}

#: Per node type, a rule returning what is wrong with its parameter shapes (or None).
_SHAPE_RULES: dict[type, Callable[[Any], str | None]] = {
    nir.Affine: _dense_shapes,
    nir.Linear: _dense_shapes,
    nir.Conv2d: _conv_shapes,
    nir.SumPool2d: _pool_shapes,
    nir.AvgPool2d: _pool_shapes,
}


def check_params(path: Any, name: str, node: Any) -> None:
    """Finite parameters, positive time constants, consistent parameter shapes."""
    what = f"node {name!r} ({type(node).__name__})"
    for key, value in vars(node).items():
        if key in _ARRAY_FIELDS_SKIP:
            continue
        arr = np.asarray(value) if isinstance(value, (np.ndarray, float, np.floating)) else None
        if arr is not None and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise fail(path, f"{what}: parameter {key!r} has NaN or infinite values")
    for key in TIME_CONSTANTS.get(type(node), ()):
        if not np.all(np.asarray(getattr(node, key)) > 0):
            raise fail(path, f"{what}: {key} must be > 0")
    rule = _SHAPE_RULES.get(type(node))
    problem = rule(node) if rule else None
    if problem:
        raise fail(path, f"{what}: {problem}")


def check_time_step(path: Any, name: str, node: Any, dt: float) -> None:
    """Forward Euler at ``dt`` needs ``dt <= tau`` for every time constant: with ``dt/tau > 1``
    each step overshoots the value the membrane decays towards (and diverges past 2)."""
    for key in TIME_CONSTANTS.get(type(node), ()):
        tau = float(np.min(getattr(node, key)))
        if dt > tau * (1 + 1e-6):
            raise fail(
                path,
                f"node {name!r} ({type(node).__name__}): dt = {dt:g} s is larger "
                f"than its {key} = {tau:g} s; forward Euler needs dt <= {key}: "
                "give a smaller --dt",
            )


def check_edge_ends(path: Any, names: set[str], edges: list[tuple[str, str]]) -> None:
    for src, dst in edges:
        for end in (src, dst):
            if end not in names:
                raise fail(path, f"edge ({src!r} -> {dst!r}) names missing node {end!r}")


def check_graph(graph: nir.NIRGraph, path: Any = "<graph>") -> nir.NIRGraph:
    """Structural checks for a (possibly recurrent) NIR graph in stac IR: edges name existing
    nodes, no duplicate edges, an Input and an Output, shapes agree on every edge, parameters
    are finite and consistent. Unlike :func:`stac.ir.verify` it allows cycles (recurrent
    connections)."""
    check_edge_ends(path, set(graph.nodes), graph.edges)
    seen: set[tuple[str, str]] = set()
    for src, dst in graph.edges:
        if (src, dst) in seen:
            raise fail(path, f"duplicate edge ({src!r} -> {dst!r})")
        seen.add((src, dst))
    if not any(isinstance(n, nir.Input) for n in graph.nodes.values()):
        raise fail(path, "graph has no Input node")
    if not any(isinstance(n, nir.Output) for n in graph.nodes.values()):
        raise fail(path, "graph has no Output node")
    pre, post = predecessors(graph), successors(graph)
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.Input) and not pre[name]:
            raise fail(path, f"node {name!r} ({type(node).__name__}) has no input edge")
        if not isinstance(node, nir.Output) and not post[name]:
            raise fail(path, f"node {name!r} ({type(node).__name__}) has no output edge")
        want = int(np.prod(input_shape(node)))
        for src in pre[name]:
            got = int(np.prod(output_shape(graph.nodes[src])))
            if got != want:
                raise fail(
                    path,
                    f"shape mismatch on edge {src!r} -> {name!r}: {src} gives "
                    f"{output_shape(graph.nodes[src])}, {name} "
                    f"({type(node).__name__}) takes {input_shape(node)}",
                )
        if not isinstance(node, StacNode):
            check_params(path, name, node)
    return graph


__all__ = [
    "TIME_CONSTANTS",
    "check_edge_ends",
    "check_graph",
    "check_params",
    "check_time_step",
    "fail",
]
