"""Reading NIR files into stac IR, and the checks that make every bad file one clear error.

:func:`read_nir` turns each problem into one :class:`stac.errors.StacError` that names the
file, the node and the problem: a file that is not HDF5 or not NIR, edges to missing nodes,
node types stac does not know, shapes that do not line up, parameters with NaN or infinity.
Nested ``NIRGraph`` nodes are flattened into the top-level graph (their nodes are named
``outer.inner``). The time step ``dt`` (NIR is continuous-time) is stored in
``graph.metadata["dt"]``; :mod:`stac.sim.nir_neurons` says how each neuron type is discretised
with it. :func:`check_graph` is the structural check for NIR graphs in stac IR that, unlike
:func:`stac.ir.verify`, allows cycles.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import nir
import numpy as np

from stac.errors import StacError
from stac.ir.graph import make_graph
from stac.ir.nir_io.check import (
    check_edge_ends,
    check_graph,
    check_params,
    check_time_step,
    fail,
)
from stac.ir.nir_io.order import execution_order, order_allowing_cycles
from stac.ir.nir_io.size import check_declared_sizes, check_size
from stac.ir.nir_io.supported import (
    RECURRENT_BIAS,
    RECURRENT_BIASES,
    RESET_ORIGIN,
    RESETS,
    RESETTABLE,
    STATEFUL,
    SUPPORTED,
    type_list,
)


def _flatten(graph: nir.NIRGraph, prefix: str = "") -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Inline nested NIRGraph nodes. An edge into a subgraph goes to its Input node's
    successors, an edge out of it leaves from its Output node's predecessors."""
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, list[str]] = {}  # subgraph name -> inner nodes fed by its Input(s)
    exit_: dict[str, list[str]] = {}  # subgraph name -> inner nodes feeding its Output(s)
    for name, node in graph.nodes.items():
        full = f"{prefix}{name}"
        if isinstance(node, nir.NIRGraph):
            inner_nodes, inner_edges = _flatten(node, f"{full}.")
            ins = {f"{full}.{k}" for k, n in node.nodes.items() if isinstance(n, nir.Input)}
            outs = {f"{full}.{k}" for k, n in node.nodes.items() if isinstance(n, nir.Output)}
            entry[full] = [d for s, d in inner_edges if s in ins]
            exit_[full] = [s for s, d in inner_edges if d in outs]
            nodes.update({k: v for k, v in inner_nodes.items() if k not in ins | outs})
            edges.extend((s, d) for s, d in inner_edges if s not in ins and d not in outs)
        else:
            nodes[full] = node
    for src, dst in graph.edges:
        srcs = exit_.get(f"{prefix}{src}", [f"{prefix}{src}"])
        dsts = entry.get(f"{prefix}{dst}", [f"{prefix}{dst}"])
        edges.extend((s, d) for s in srcs for d in dsts)
    return nodes, edges


def _as_shape(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype == object or arr.size == 0:
        return None
    if arr.dtype.kind not in "iuf":
        raise StacError(f"a declared shape holds {arr.dtype} values, not integers: {arr!r:.60}")
    return tuple(int(v) for v in arr.reshape(-1))


def _typed(types: Any, key: str) -> tuple[int, ...] | None:
    if not isinstance(types, dict):
        return None
    return _as_shape(types.get(key))


def _pool_out(shape: tuple[int, ...], node: Any) -> tuple[int, ...]:
    k = np.broadcast_to(np.asarray(node.kernel_size).reshape(-1), (2,))
    s = np.broadcast_to(np.asarray(node.stride).reshape(-1), (2,))
    p = np.broadcast_to(np.asarray(node.padding).reshape(-1), (2,))
    c, h, w = shape
    sizes = zip((h, w), k, s, p, strict=False)
    return (c, *(int((x + 2 * pp - kk) // ss + 1) for x, kk, ss, pp in sizes))


def _infer_shapes(path: Any, nodes: dict[str, Any], edges: list[tuple[str, str]]) -> None:
    """Fill in input/output types that the file leaves undefined (pooling, flatten) and check
    that every edge joins equal shapes. Mutates the freshly read nodes."""
    order = order_allowing_cycles(nodes, edges)
    pre: dict[str, list[str]] = defaultdict(list)
    for s, d in edges:
        pre[d].append(s)
    for name in order:
        node = nodes[name]
        in_shape = _typed(node.input_type, "input")
        if in_shape is None:
            fed = [_typed(nodes[p].output_type, "output") for p in pre[name]]
            known = [g for g in fed if g is not None]
            if not known:
                raise fail(
                    path,
                    f"node {name!r} ({type(node).__name__}) has no input shape "
                    "and none can be inferred from its inputs",
                )
            in_shape = known[0]
            node.input_type = {"input": np.array(in_shape)}
        out_shape = _typed(node.output_type, "output")
        if out_shape is None:
            if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
                if len(in_shape) != 3:
                    raise fail(
                        path,
                        f"node {name!r} ({type(node).__name__}) needs a "
                        f"(channels, height, width) input, got {in_shape}",
                    )
                out_shape = _pool_out(in_shape, node)
            elif isinstance(node, nir.Flatten):
                start, end = int(node.start_dim), int(node.end_dim)
                end = end if end >= 0 else len(in_shape) + end
                mid = int(np.prod(in_shape[start : end + 1]))
                out_shape = (*in_shape[:start], mid, *in_shape[end + 1 :])
            elif isinstance(node, nir.Output):
                out_shape = in_shape
            else:
                raise fail(path, f"node {name!r} ({type(node).__name__}) has no output shape")
            node.output_type = {"output": np.array(out_shape)}
    for s, d in edges:
        got = _typed(nodes[s].output_type, "output")
        want = _typed(nodes[d].input_type, "input")
        if got is not None and want is not None and int(np.prod(got)) != int(np.prod(want)):
            raise fail(
                path,
                f"shape mismatch on edge {s!r} -> {d!r}: {s} "
                f"({type(nodes[s]).__name__}) gives {got}, {d} "
                f"({type(nodes[d]).__name__}) takes {want}",
            )


def _nir_type_names() -> set[str]:
    return {n for n, o in vars(nir).items() if isinstance(o, type) and issubclass(o, nir.NIRNode)}


def _stored_nodes(group: Any, prefix: str = "") -> list[tuple[str, str, Any]]:
    """(node name, stored type name, HDF5 group) of every node in a NIR group, nested
    included."""
    out: list[tuple[str, str, Any]] = []
    nodes = group.get("nodes")
    if nodes is None:
        return out
    for key in nodes:
        item = nodes[key]
        raw = item["type"][()] if "type" in item else b"<none>"
        ntype = raw.decode("utf8", "replace") if isinstance(raw, bytes) else str(raw)
        out.append((f"{prefix}{key}", ntype, item))
        if ntype == "NIRGraph":
            out.extend(_stored_nodes(item, f"{prefix}{key}."))
    return out


def _graph_groups(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(subgraph path, HDF5 group) of a NIR graph group and every graph nested in it; the
    top level's path is ""."""
    out = [(prefix, group)]
    nodes = group.get("nodes")
    for key in nodes if nodes is not None else ():
        item = nodes[key]
        raw = item["type"][()] if "type" in item else b""
        if (raw.decode("utf8", "replace") if isinstance(raw, bytes) else str(raw)) == "NIRGraph":
            out.extend(_graph_groups(item, f"{prefix}{key}."))
    return out


def _check_stored_edges(path: Path, sub: str, group: Any) -> None:
    """Every edge of one (sub)graph joins two of its nodes; an error names the subgraph."""
    edges = group.get("edges")
    if edges is None:
        return
    check_size(
        path,
        f"{'subgraph ' + repr(sub[:-1]) if sub else 'the graph'}'s edges",
        int(np.prod(edges.shape, dtype=object)),
        max(edges.dtype.itemsize, 1),
    )
    names = set(group["nodes"]) if "nodes" in group else set()
    where = f"in subgraph {sub[:-1]!r}" if sub else "in the top-level graph"
    for row in np.asarray(edges[()]).reshape(-1, 2) if edges.size else ():
        src, dst = (v.decode("utf8", "replace") if isinstance(v, bytes) else str(v) for v in row)
        for end in (src, dst):
            if end not in names:
                raise fail(
                    path,
                    f"edge ({src!r} -> {dst!r}) {where} names missing node {end!r} "
                    f"(the {'sub' if sub else ''}graph has {sorted(names)})",
                )


def _check_hdf5(path: Path) -> None:
    """Refuse a file that is not HDF5, not NIR, that names a node type NIR does not have, or
    whose node NIR cannot build (a missing field, parameters of different shapes), naming
    the node, before NIR's own reader sees it (its errors name no node)."""
    try:
        import h5py
        from nir.serialization import read_node

        if not h5py.is_hdf5(path):
            raise fail(path, "is not an HDF5 file (NIR files are HDF5)")
        with h5py.File(path, "r") as f:
            if "node" not in f or not isinstance(f["node"], h5py.Group):
                raise fail(path, "is HDF5 but not NIR (no 'node' group)")
            for sub, graph_group in _graph_groups(f["node"]):
                _check_stored_edges(path, sub, graph_group)
            for name, ntype, group in _stored_nodes(f["node"]):
                check_declared_sizes(path, name, group)
                if ntype not in _nir_type_names():
                    raise fail(
                        path,
                        f"node {name!r} has node type {ntype!r}, which is not a "
                        f"NIR type stac knows (known: {type_list()})",
                    )
                if ntype == "NIRGraph":
                    continue
                try:
                    read_node(group)
                except Exception as exc:  # noqa: BLE001
                    raise fail(
                        path, f"node {name!r} ({ntype}) cannot be built: {_first_line(exc)}"
                    ) from None
    except StacError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear line
        raise fail(path, f"cannot be opened ({type(exc).__name__}: {exc})") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if not text or isinstance(exc, KeyError) else text


def _read_raw(path: Path) -> nir.NIRGraph:
    """NIR's reader (types left unchecked: stac infers and checks them itself)."""
    try:
        raw = nir.read(path, type_check=False)
    except Exception as exc:  # noqa: BLE001
        text = _first_line(exc)
        m = re.search(r"Unknown unit type: b?'?([A-Za-z0-9_]+)", text)
        if m:
            raise fail(
                path,
                f"node type {m.group(1)!r} is not a NIR type stac knows (known: {type_list()})",
            ) from None
        raise fail(path, f"is not a valid NIR graph: {text}") from None
    if not isinstance(raw, nir.NIRGraph):
        raise fail(path, f"top-level node is a {type(raw).__name__}, not a NIRGraph")
    try:
        raw.validate_structure()
    except ValueError as exc:
        raise fail(path, f"is not a valid NIR graph: {exc}") from None
    return raw


def _set_reset(path: Path, name: str, node: Any, reset: str | None) -> None:
    """Give a resettable neuron node a ``reset`` in its metadata and say where it came from
    (:data:`RESET_ORIGIN`): the file's own (checked) wins; else ``reset`` ("option"); else
    "zero" ("default"). ``node`` is typed Any: nir ships no type information, and narrowing
    by :data:`RESETTABLE` (a tuple of plain types) would leave only ``object``."""
    meta = dict(node.metadata or {})
    if "reset" not in meta:
        meta["reset"], meta[RESET_ORIGIN] = (reset, "option") if reset else ("zero", "default")
    elif meta["reset"] not in RESETS:
        raise fail(path, f"node {name!r}: metadata reset {meta['reset']!r} is not one of {RESETS}")
    else:
        meta[RESET_ORIGIN] = "file"
    node.metadata = meta


def _refuse_stateless_cycles(path: Path, nodes: dict[str, Any], edges: list[tuple[str, str]]):
    """A cycle with no neuron on it has no delay in NIR (every edge is instantaneous): refuse
    it, naming its nodes, rather than cut it somewhere with an implicit one-step delay."""
    kept = [(s, d) for s, d in edges if not isinstance(nodes[s], STATEFUL)]
    post: dict[str, list[str]] = defaultdict(list)
    for s, d in kept:
        post[s].append(d)
    state: dict[str, int] = {}  # 1 on the DFS stack, 2 done
    for root in nodes:
        if root in state:
            continue
        stack, trail = [(root, iter(post[root]))], [root]
        state[root] = 1
        while stack:
            name, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                trail.pop()
                state[name] = 2
            elif state.get(nxt) == 1:
                cycle = trail[trail.index(nxt) :] + [nxt]
                raise fail(
                    path,
                    f"cycle {' -> '.join(cycle)} has no neuron on it: NIR edges carry no "
                    "delay, so it has no step-by-step meaning; stac runs recurrent graphs "
                    "whose every cycle passes through a neuron (LIF, CubaLIF, IF, LI, "
                    "CubaLI, I)",
                )
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(post[nxt])))
                trail.append(nxt)


def _mark_recurrent_bias(graph: nir.NIRGraph, convention: str) -> list[str]:
    """Record the recurrent-bias convention on each Affine fed only by last step's neuron
    output (a recurrent weight); return their names. See :mod:`stac.sim.nir_neurons`."""
    _, back = execution_order(graph)
    fed: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for s, d in graph.edges:
        fed[d].append((s, d))
    marked = []
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Affine) and fed[name] and all(e in back for e in fed[name]):
            node.metadata = {**(node.metadata or {}), RECURRENT_BIAS: convention}
            marked.append(name)
    return marked


def read_nir(
    path: str | Path,
    dt: float,
    reset: str | None = None,
    recurrent_bias: str = "snntorch",
) -> nir.NIRGraph:
    """Read any NIR file into a checked stac IR graph with ``metadata["dt"] = dt``.

    ``reset`` ("zero" or "subtract") sets how spiking neurons reset when the file does not
    say (NIR 1.0 has no reset-mode field; "zero" means reset to ``v_reset``). A node whose
    metadata has ``reset`` keeps its own; each neuron's metadata says which applied
    (``reset_origin``: "file", "option" or "default"). ``recurrent_bias`` ("snntorch", the
    default, or "norse") says whether a recurrent weight's bias reaches its neuron at step 0
    (see :mod:`stac.sim.nir_neurons`); it is stored in ``metadata["recurrent_bias"]`` with
    the recurrent weights in ``metadata["recurrent_weights"]``. A cycle without a neuron on
    it is refused. Every problem becomes one :class:`StacError`.
    """
    path = Path(path)
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise StacError(f"dt must be a positive number of seconds, got {dt!r}")
    if reset is not None and reset not in RESETS:
        raise StacError(f"reset must be one of {RESETS}, got {reset!r}")
    if recurrent_bias not in RECURRENT_BIASES:
        raise StacError(f"recurrent_bias must be one of {RECURRENT_BIASES}, got {recurrent_bias!r}")
    if not path.is_file():
        raise fail(path, "does not exist or is not a file")
    _check_hdf5(path)
    raw = _read_raw(path)
    nodes, edges = _flatten(raw)
    unknown = [f"{n} ({type(v).__name__})" for n, v in nodes.items() if type(v) not in SUPPORTED]
    if unknown:
        raise fail(
            path, f"stac cannot import node(s) {', '.join(unknown)}; supported types: {type_list()}"
        )
    check_edge_ends(path, set(nodes), edges)
    _refuse_stateless_cycles(path, nodes, edges)
    for name, node in nodes.items():
        check_params(path, name, node)
        check_time_step(path, name, node, float(dt))
    _infer_shapes(path, nodes, edges)
    for name, node in nodes.items():
        if isinstance(node, RESETTABLE):
            _set_reset(path, name, node, reset)
    metadata = {k: v for k, v in (raw.metadata or {}).items() if isinstance(v, (int, float, str))}
    metadata.update(dt=float(dt), source=f"nir:{path.name}")
    graph = make_graph(nodes, edges, metadata)
    marked = _mark_recurrent_bias(graph, recurrent_bias)
    graph.metadata.update(recurrent_bias=recurrent_bias, recurrent_weights=marked)
    return check_graph(graph, path)


__all__ = ["check_graph", "read_nir"]
