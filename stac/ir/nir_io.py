"""NIR files in and out: ``read_nir`` (any NIR graph -> stac IR) and ``write_nir`` /
``export_split`` (stac IR -> standard NIR files).

Import checks everything a NIR file can get wrong and turns each problem into one
:class:`stac.errors.StacError` that names the file, the node and the problem: a file that is
not HDF5 or not NIR, edges to missing nodes, node types stac does not know, shapes that do not
line up, parameters with NaN or infinity. Nested ``NIRGraph`` nodes are flattened into the
top-level graph (their nodes are named ``outer.inner``). The time step ``dt`` (NIR is
continuous-time) is stored in ``graph.metadata["dt"]``; see :mod:`stac.sim.nir_neurons` for
how each neuron type is discretised with it.

Export writes only NIR: a graph with stac-only nodes (:class:`stac.ir.nodes.StacNode`) is
refused with an error that lists them, unless the caller asks for a split export, which writes
each maximal NIR-expressible connected subgraph to its own file plus ``manifest.json`` saying
how the host ops join them. Node names are made valid NIR names (no dots); the manifest and
each file's metadata keep the original names.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import nir
import numpy as np

from stac.errors import StacError
from stac.ir.graph import Node, input_shape, make_graph, output_shape, predecessors, successors
from stac.ir.nodes import StacNode

#: NIR node types stac can import, simulate (stac.sim.stepper) and export.
SUPPORTED: tuple[type, ...] = (
    nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Scale, nir.Conv2d, nir.SumPool2d,
    nir.AvgPool2d, nir.Flatten, nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI, nir.I,
    nir.Threshold,
)
#: Neuron types whose output is spikes (events).
SPIKING: tuple[type, ...] = (nir.LIF, nir.CubaLIF, nir.IF, nir.Threshold)
#: Types that pass events through unchanged in kind (an event in, an event out).
EVENT_ROUTING: tuple[type, ...] = (nir.Flatten, nir.SumPool2d)
RESETS = ("zero", "subtract")

_ARRAY_FIELDS_SKIP = {"input_type", "output_type", "metadata"}


# ---------------------------------------------------------------------------------- import


def _fail(path: Path | str, msg: str) -> StacError:
    return StacError(f"NIR file {path}: {msg}")


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
    return (c, *(int((x + 2 * pp - kk) // ss + 1) for x, kk, ss, pp in zip((h, w), k, s, p)))


def _order_allowing_cycles(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> list[str]:
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


def _kahn(names: list[str], edges: list[tuple[str, str]]) -> list[str] | None:
    indeg = {n: 0 for n in names}
    post: dict[str, list[str]] = defaultdict(list)
    for s, d in edges:
        indeg[d] += 1
        post[s].append(d)
    ready = [n for n in names if indeg[n] == 0]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in post[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    return order if len(order) == len(names) else None


def execution_order(graph: nir.NIRGraph) -> tuple[list[str], set[tuple[str, str]]]:
    """An order for step-by-step execution and the set of back edges (edges that deliver the
    previous step's value because they close a cycle).

    A cycle is cut at the output of a stateful neuron: every edge on a cycle whose source is
    a neuron (LIF, CubaLIF, IF, LI, CubaLI, I) delivers last step's output, so a recurrent
    weight ``w_rec`` runs in the current step on last step's spikes (its bias included at
    step 0), as in snnTorch's RLeaky/RSynaptic. Cycles without a neuron are cut where a
    depth-first search from the inputs closes them.
    """
    names = list(graph.nodes)
    edges = list(graph.edges)
    post: dict[str, list[str]] = defaultdict(list)
    for s, d in edges:
        post[s].append(d)
    stateful = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI, nir.I)
    cut = {(s, d) for s, d in edges
           if isinstance(graph.nodes[s], stateful) and _reaches(post, d, s)}
    order = _kahn(names, [e for e in edges if e not in cut])
    if order is None:
        order = _order_allowing_cycles(graph.nodes, edges)
    pos = {n: i for i, n in enumerate(order)}
    back = {(s, d) for s, d in edges if pos[s] >= pos[d]}
    return order, back


def _infer_shapes(path: Any, nodes: dict[str, Any], edges: list[tuple[str, str]]) -> None:
    """Fill in input/output types that the file leaves undefined (pooling, flatten) and check
    that every edge joins equal shapes. Mutates the freshly read nodes."""
    order = _order_allowing_cycles(nodes, edges)
    pre: dict[str, list[str]] = defaultdict(list)
    for s, d in edges:
        pre[d].append(s)
    for name in order:
        node = nodes[name]
        in_shape = _typed(node.input_type, "input")
        if in_shape is None:
            got = [_typed(nodes[p].output_type, "output") for p in pre[name]]
            got = [g for g in got if g is not None]
            if not got:
                raise _fail(path, f"node {name!r} ({type(node).__name__}) has no input shape "
                                  "and none can be inferred from its inputs")
            in_shape = got[0]
            node.input_type = {"input": np.array(in_shape)}
        out_shape = _typed(node.output_type, "output")
        if out_shape is None:
            if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
                if len(in_shape) != 3:
                    raise _fail(path, f"node {name!r} ({type(node).__name__}) needs a "
                                      f"(channels, height, width) input, got {in_shape}")
                out_shape = _pool_out(in_shape, node)
            elif isinstance(node, nir.Flatten):
                start, end = int(node.start_dim), int(node.end_dim)
                end = end if end >= 0 else len(in_shape) + end
                mid = int(np.prod(in_shape[start:end + 1]))
                out_shape = (*in_shape[:start], mid, *in_shape[end + 1:])
            elif isinstance(node, nir.Output):
                out_shape = in_shape
            else:
                raise _fail(path, f"node {name!r} ({type(node).__name__}) has no output shape")
            node.output_type = {"output": np.array(out_shape)}
    for s, d in edges:
        got = _typed(nodes[s].output_type, "output")
        want = _typed(nodes[d].input_type, "input")
        if got is not None and want is not None and int(np.prod(got)) != int(np.prod(want)):
            raise _fail(path, f"shape mismatch on edge {s!r} -> {d!r}: {s} "
                              f"({type(nodes[s]).__name__}) gives {got}, {d} "
                              f"({type(nodes[d]).__name__}) takes {want}")


def _check_params(path: Any, name: str, node: Any) -> None:
    for key, value in vars(node).items():
        if key in _ARRAY_FIELDS_SKIP:
            continue
        arr = np.asarray(value) if isinstance(value, (np.ndarray, float, np.floating)) else None
        if arr is not None and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise _fail(path, f"node {name!r} ({type(node).__name__}): parameter {key!r} has "
                              "NaN or infinite values")
    if isinstance(node, (nir.LIF, nir.LI)):
        if not np.all(np.asarray(node.tau) > 0):
            raise _fail(path, f"node {name!r} ({type(node).__name__}): tau must be > 0")
    if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
        if not (np.all(np.asarray(node.tau_mem) > 0) and np.all(np.asarray(node.tau_syn) > 0)):
            raise _fail(path, f"node {name!r} ({type(node).__name__}): tau_mem and tau_syn "
                              "must be > 0")


def check_graph(graph: nir.NIRGraph, path: Any = "<graph>") -> nir.NIRGraph:
    """Structural checks for a (possibly recurrent) NIR graph in stac IR: edges name existing
    nodes, no duplicate edges, an Input and an Output, shapes agree on every edge, parameters
    are finite. Unlike :func:`stac.ir.verify` it allows cycles (recurrent connections)."""
    names = set(graph.nodes)
    seen: set[tuple[str, str]] = set()
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in names:
                raise _fail(path, f"edge ({src!r} -> {dst!r}) names missing node {end!r}")
        if (src, dst) in seen:
            raise _fail(path, f"duplicate edge ({src!r} -> {dst!r})")
        seen.add((src, dst))
    if not any(isinstance(n, nir.Input) for n in graph.nodes.values()):
        raise _fail(path, "graph has no Input node")
    if not any(isinstance(n, nir.Output) for n in graph.nodes.values()):
        raise _fail(path, "graph has no Output node")
    pre, post = predecessors(graph), successors(graph)
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.Input) and not pre[name]:
            raise _fail(path, f"node {name!r} ({type(node).__name__}) has no input edge")
        if not isinstance(node, nir.Output) and not post[name]:
            raise _fail(path, f"node {name!r} ({type(node).__name__}) has no output edge")
        want = int(np.prod(input_shape(node)))
        for src in pre[name]:
            got = int(np.prod(output_shape(graph.nodes[src])))
            if got != want:
                raise _fail(path, f"shape mismatch on edge {src!r} -> {name!r}: {src} gives "
                                  f"{output_shape(graph.nodes[src])}, {name} "
                                  f"({type(node).__name__}) takes {input_shape(node)}")
        if not isinstance(node, StacNode):
            _check_params(path, name, node)
    return graph


def _nir_type_names() -> set[str]:
    return {n for n, o in vars(nir).items() if isinstance(o, type) and issubclass(o, nir.NIRNode)}


def _stored_types(group: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(node name, stored type name) of every node in an HDF5 NIR group, nested included."""
    out = []
    nodes = group.get("nodes")
    if nodes is None:
        return out
    for key in nodes:
        item = nodes[key]
        raw = item["type"][()] if "type" in item else b"<none>"
        ntype = raw.decode("utf8", "replace") if isinstance(raw, bytes) else str(raw)
        out.append((f"{prefix}{key}", ntype))
        if ntype == "NIRGraph":
            out.extend(_stored_types(item, f"{prefix}{key}."))
    return out


def read_nir(path: str | Path, dt: float, reset: str | None = None) -> nir.NIRGraph:
    """Read any NIR file into a checked stac IR graph with ``metadata["dt"] = dt``.

    ``reset`` ("zero" or "subtract") sets how spiking neurons reset when the file does not
    say (NIR 1.0 has no reset-mode field; "zero" means reset to ``v_reset``). A node whose
    metadata has ``reset`` keeps its own. Every problem becomes one :class:`StacError`.
    """
    path = Path(path)
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise StacError(f"dt must be a positive number of seconds, got {dt!r}")
    if reset is not None and reset not in RESETS:
        raise StacError(f"reset must be one of {RESETS}, got {reset!r}")
    if not path.is_file():
        raise _fail(path, "does not exist or is not a file")
    try:
        import h5py

        if not h5py.is_hdf5(path):
            raise _fail(path, "is not an HDF5 file (NIR files are HDF5)")
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise _fail(path, "is HDF5 but not NIR (no 'node' group)")
            for name, ntype in _stored_types(f["node"]):
                if ntype not in _nir_type_names():
                    raise _fail(path, f"node {name!r} has node type {ntype!r}, which is not a "
                                      "NIR type stac knows (known: "
                                      f"{', '.join(t.__name__ for t in SUPPORTED)})")
    except StacError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear line
        raise _fail(path, f"cannot be opened ({type(exc).__name__}: {exc})") from None
    try:
        raw = nir.read(path, type_check=False)
    except Exception as exc:  # noqa: BLE001
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        m = re.search(r"Unknown unit type: b?'?([A-Za-z0-9_]+)", text)
        if m:
            raise _fail(path, f"node type {m.group(1)!r} is not a NIR type stac knows "
                              f"(known: {', '.join(t.__name__ for t in SUPPORTED)})") from None
        raise _fail(path, f"is not a valid NIR graph: {text}") from None
    if not isinstance(raw, nir.NIRGraph):
        raise _fail(path, f"top-level node is a {type(raw).__name__}, not a NIRGraph")
    try:
        raw.validate_structure()
    except ValueError as exc:
        raise _fail(path, f"is not a valid NIR graph: {exc}") from None
    nodes, edges = _flatten(raw)
    unknown = [f"{n} ({type(v).__name__})" for n, v in nodes.items() if type(v) not in SUPPORTED]
    if unknown:
        raise _fail(path, f"stac cannot import node(s) {', '.join(unknown)}; supported types: "
                          f"{', '.join(t.__name__ for t in SUPPORTED)}")
    names = set(nodes)
    for s, d in edges:
        for end in (s, d):
            if end not in names:
                raise _fail(path, f"edge ({s!r} -> {d!r}) names missing node {end!r}")
    for name, node in nodes.items():
        _check_params(path, name, node)
    _infer_shapes(path, nodes, edges)
    for name, node in nodes.items():
        if isinstance(node, SPIKING) and not isinstance(node, nir.Threshold):
            meta = dict(node.metadata or {})
            if "reset" not in meta:
                meta["reset"] = reset or "zero"
            elif meta["reset"] not in RESETS:
                raise _fail(path, f"node {name!r}: metadata reset {meta['reset']!r} is not one "
                                  f"of {RESETS}")
            node.metadata = meta
    metadata = {k: v for k, v in (raw.metadata or {}).items() if isinstance(v, (int, float, str))}
    metadata.update(dt=float(dt), source=f"nir:{path.name}")
    graph = make_graph(nodes, edges, metadata)
    return check_graph(graph, path)


# ---------------------------------------------------------------------------------- export


def stac_only_nodes(graph: nir.NIRGraph) -> list[str]:
    """Names (with types) of the nodes NIR cannot express."""
    return [f"{n} ({type(v).__name__})" for n, v in graph.nodes.items()
            if isinstance(v, StacNode) or type(v) not in SUPPORTED]


def _valid_names(names: Iterable[str]) -> dict[str, str]:
    """Original name -> a NIR-safe name (letters, digits, underscore; unique)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = re.sub(r"[^A-Za-z0-9_]", "_", name) or "node"
        cand, i = base, 1
        while cand in used:
            cand, i = f"{base}_{i}", i + 1
        used.add(cand)
        out[name] = cand
    return out


def _clean_node(node: Any) -> Any:
    """A copy of a NIR node without stac's metadata (placement dicts do not round-trip
    through NIR's HDF5 metadata) and with explicit types."""
    clone = copy.copy(node)
    meta = {k: v for k, v in (node.metadata or {}).items()
            if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    clone.metadata = meta
    if isinstance(node, nir.Input):
        clone = nir.Input(input_type={"input": np.array(input_shape(node))}, metadata=meta)
    elif isinstance(node, nir.Output):
        clone = nir.Output(output_type={"output": np.array(output_shape(node))}, metadata=meta)
    return clone


def _to_nir(nodes: dict[str, Any], edges: list[tuple[str, str]], metadata: dict) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def _write_checked(graph: nir.NIRGraph, path: Path) -> None:
    """Write to a temporary file, read it back with NIR's type check and structure check,
    then move it into place: a failed export leaves nothing behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        nir.write(tmp, graph)
        back = nir.read(tmp, type_check=True)
        back.validate_structure()
        os.replace(tmp, path)
    except Exception as exc:  # noqa: BLE001
        raise StacError(f"NIR export to {path} failed its read-back check: "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _export_metadata(graph: nir.NIRGraph) -> dict[str, Any]:
    meta: dict[str, Any] = {"exported_by": "stac"}
    if "dt" in graph.metadata:
        meta["dt"] = float(graph.metadata["dt"])
    return meta


def to_nir_graph(graph: nir.NIRGraph) -> tuple[nir.NIRGraph, dict[str, str]]:
    """The NIR graph that :func:`write_nir` writes, and the original -> NIR name map."""
    bad = stac_only_nodes(graph)
    if bad:
        raise StacError(
            f"the graph has {len(bad)} node(s) NIR cannot express: {', '.join(bad[:20])}"
            f"{' ...' if len(bad) > 20 else ''}; pass --split to write each NIR-expressible "
            "part to its own file with a manifest"
        )
    names = _valid_names(graph.nodes)
    nodes = {names[n]: _clean_node(v) for n, v in graph.nodes.items()}
    edges = [(names[s], names[d]) for s, d in graph.edges]
    return _to_nir(nodes, edges, _export_metadata(graph)), names


def write_nir(graph: nir.NIRGraph, path: str | Path) -> dict[str, str]:
    """Write ``graph`` as standard NIR (HDF5) at ``path``; return the node-name map.

    Refuses (StacError listing them) graphs with stac-only nodes. Node metadata that NIR's
    HDF5 format cannot round-trip (stac's placement tables) is dropped; ``dt`` goes into the
    graph metadata. The file is read back with ``type_check=True`` and
    ``validate_structure()`` before it is moved into place.
    """
    nir_graph, names = to_nir_graph(graph)
    _write_checked(nir_graph, Path(path))
    return names


def _components(graph: nir.NIRGraph) -> list[list[str]]:
    """Maximal weakly connected sets of NIR-expressible nodes, in graph order."""
    nir_nodes = [n for n, v in graph.nodes.items()
                 if not isinstance(v, StacNode) and type(v) in SUPPORTED]
    parent = {n: n for n in nir_nodes}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for s, d in graph.edges:
        if s in parent and d in parent:
            parent[find(s)] = find(d)
    groups: dict[str, list[str]] = {}
    for n in nir_nodes:
        groups.setdefault(find(n), []).append(n)
    return list(groups.values())


def export_split(graph: nir.NIRGraph, out_dir: str | Path, force: bool = False) -> dict[str, Any]:
    """Write each maximal NIR-expressible connected subgraph as ``part_<k>.nir`` in
    ``out_dir`` and a ``manifest.json`` describing how host (stac-only) ops join them.

    Each part gets one NIR ``Input`` per outside producer that feeds it (named
    ``in_<producer>``) and one ``Output`` per inside node that feeds something outside (named
    ``out_<node>``). The manifest lists, per part, its file, its node-name map, and where each
    Input's value comes from and where each Output's value goes; and per host op its type and
    its inputs and consumers as ``{"part": file, "port": name}`` or ``{"host_op": name}``.
    Parts with no compute node (a lone graph Input feeding a host op) are not written; the
    manifest lists them under ``graph_inputs``/``graph_outputs``. The directory is written
    atomically; an existing one is replaced only with ``force``.
    """
    from stac.artifact import writing

    out_dir = Path(out_dir)
    pre, post = predecessors(graph), successors(graph)
    parts = []
    where: dict[str, tuple[str, str]] = {}  # node -> (file, nir name) for NIR nodes written
    plans = []
    for comp in _components(graph):
        members = set(comp)
        compute = [n for n in comp if not isinstance(graph.nodes[n], (nir.Input, nir.Output))]
        if not compute:
            continue
        plans.append((comp, members))
    graph_inputs: dict[str, list[str]] = {}
    graph_outputs: dict[str, list[str]] = {}
    for k, (comp, members) in enumerate(plans):
        fname = f"part_{k}.nir"
        in_srcs = sorted({p for n in comp for p in pre[n] if p not in members})
        out_srcs = sorted({n for n in comp for c in post[n] if c not in members})
        raw_names = list(comp) + [f"in_{p}" for p in in_srcs] + [f"out_{n}" for n in out_srcs]
        names = _valid_names(raw_names)
        nodes = {names[n]: _clean_node(graph.nodes[n]) for n in comp}
        edges = [(names[s], names[d]) for s, d in graph.edges if s in members and d in members]
        inputs, outputs = {}, {}
        for p in in_srcs:
            iname = names[f"in_{p}"]
            nodes[iname] = nir.Input(input_type={"input": np.array(output_shape(graph.nodes[p]))})
            for n in comp:
                if p in pre[n]:
                    edges.append((iname, names[n]))
            inputs[iname] = {"from": p, "to": [n for n in comp if p in pre[n]]}
        for n in out_srcs:
            oname = names[f"out_{n}"]
            nodes[oname] = nir.Output(output_type={"output": np.array(output_shape(graph.nodes[n]))})
            edges.append((names[n], oname))
            outputs[oname] = {"from": n, "to": [c for c in post[n] if c not in members]}
        meta = _export_metadata(graph) | {"part": k}
        parts.append((fname, _to_nir(nodes, edges, meta)))
        for n in comp:
            where[n] = (fname, names[n])
        plans[k] = (fname, names, inputs, outputs, comp)
    for n, v in graph.nodes.items():
        if isinstance(v, nir.Input) and n not in where:
            graph_inputs[n] = list(post[n])
        if isinstance(v, nir.Output) and n not in where:
            graph_outputs[n] = list(pre[n])

    def ref(producer: str, consumer: str | None = None) -> dict[str, str]:
        node = graph.nodes[producer]
        if isinstance(node, StacNode) or type(node) not in SUPPORTED:
            return {"host_op": producer}
        if producer in where:
            fname, _ = where[producer]
            return {"part": fname, "port": _valid_names([f"out_{producer}"])[f"out_{producer}"]}
        return {"graph_input": producer}

    host_ops = {}
    for n, v in graph.nodes.items():
        if isinstance(v, StacNode) or type(v) not in SUPPORTED:
            consumers = []
            for c in post[n]:
                if c in where:
                    fname, _ = where[c]
                    consumers.append({"part": fname, "port": _valid_names([f"in_{n}"])[f"in_{n}"]})
                elif isinstance(graph.nodes[c], nir.Output):
                    consumers.append({"graph_output": c})
                else:
                    consumers.append({"host_op": c})
            host_ops[n] = {
                "type": type(v).__name__,
                "inputs": [ref(p) for p in pre[n]],
                "consumers": consumers,
                "input_shape": list(input_shape(v)),
                "output_shape": list(output_shape(v)),
            }
    manifest = {
        "format": "stac-nir-split",
        "version": 1,
        "semantics": "NIR edges sum at the destination; each part's Input 'in_X' carries the "
                     "value of host op or node X, each Output 'out_Y' the value of node Y",
        "dt": graph.metadata.get("dt"),
        "parts": [
            {"file": fname, "nodes": names_map_subset(names, comp), "inputs": inputs,
             "outputs": outputs}
            for fname, names, inputs, outputs, comp in plans
        ],
        "host_ops": host_ops,
        "graph_inputs": graph_inputs,
        "graph_outputs": graph_outputs,
    }
    with writing(out_dir, force) as tmp:
        for fname, g in parts:
            _write_checked(g, tmp / fname)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def names_map_subset(names: dict[str, str], comp: list[str]) -> dict[str, str]:
    return {n: names[n] for n in comp}


__all__ = [
    "EVENT_ROUTING", "RESETS", "SPIKING", "SUPPORTED", "check_graph", "execution_order",
    "export_split", "read_nir", "stac_only_nodes", "to_nir_graph", "write_nir",
]
