"""Writing stac IR as standard NIR: one checked file, refused when the graph has stac nodes.

Node names are made valid NIR names (no dots); stac's per-node metadata that NIR's HDF5 format
cannot round-trip (placement tables) is dropped, ``dt`` goes into the graph metadata. A
neuron's ``reset`` is written only when its source said it (the file it was read from, or the
graph that made it): one that :func:`stac.ir.nir_io.read_nir` filled in from ``--reset`` or
the default is left out, so a re-import applies its own ``--reset`` again. NIR's type check
wants equal shapes on every edge where stac wants equal sizes: an Output that declares
another shape of the same size takes its producer's shape; any other such edge is refused,
naming it. Every file is written under a temporary name, read back with NIR's type check and
structure check, and only then moved into place, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable

import nir
import numpy as np

from stac.errors import StacError
from stac.files import file_mode
from stac.ir.graph import input_shape, output_shape
from stac.ir.nir_io.supported import RECURRENT_BIAS, RESET_ORIGIN, nir_expressible


def stac_only_nodes(graph: nir.NIRGraph) -> list[str]:
    """Names (with types) of the nodes NIR cannot express."""
    return [f"{n} ({type(v).__name__})" for n, v in graph.nodes.items() if not nir_expressible(v)]


def valid_names(names: Iterable[str]) -> dict[str, str]:
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


def clean_node(node: Any) -> Any:
    """A copy of a NIR node without stac's metadata (placement dicts do not round-trip
    through NIR's HDF5 metadata) and with explicit types."""
    clone = copy.copy(node)
    source = node.metadata or {}
    meta = {
        k: v
        for k, v in source.items()
        if isinstance(v, (int, float, str))
        and not isinstance(v, bool)
        and k not in (RESET_ORIGIN, RECURRENT_BIAS)  # how stac ran it, not the source's
    }
    if source.get(RESET_ORIGIN) in ("option", "default"):  # stac's choice, not the source's
        meta.pop("reset", None)
    clone.metadata = meta
    if isinstance(node, nir.Input):
        clone = nir.Input(input_type={"input": np.array(input_shape(node))}, metadata=meta)
    elif isinstance(node, nir.Output):
        clone = nir.Output(output_type={"output": np.array(output_shape(node))}, metadata=meta)
    return clone


def align_shapes(
    nodes: dict[str, Any], edges: list[tuple[str, str]], names: dict[str, str]
) -> None:
    """Give each Output its producer's shape where the two differ only in shape (stac checks
    sizes, NIR's type check shapes); refuse any other edge whose ends differ, naming it by
    the graph's own names. ``nodes`` are the cleaned copies under their NIR names (``names``:
    original -> NIR name), changed in place."""
    label = {v: k for k, v in names.items()}
    for src, dst in edges:
        got, want = output_shape(nodes[src]), input_shape(nodes[dst])
        if got == want:
            continue
        if isinstance(nodes[dst], nir.Output) and int(np.prod(got)) == int(np.prod(want)):
            shape = np.array(got)
            nodes[dst] = nir.Output(output_type={"output": shape}, metadata=nodes[dst].metadata)
            continue
        same = int(np.prod(got)) == int(np.prod(want))
        raise StacError(
            f"cannot export to NIR: edge {label.get(src, src)!r} -> {label.get(dst, dst)!r} "
            f"joins {type(nodes[src]).__name__} output {got} to {type(nodes[dst]).__name__} "
            f"input {want}{', the same size in another shape' if same else ''}; NIR requires "
            "equal shapes on an edge (insert a Flatten or fix the declared shape)"
        )


def nir_graph(nodes: dict[str, Any], edges: list[tuple[str, str]], metadata: dict) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def write_checked(graph: nir.NIRGraph, path: Path) -> None:
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
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except Exception as exc:  # noqa: BLE001
        raise StacError(
            f"NIR export to {path} failed its read-back check: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export_metadata(graph: nir.NIRGraph) -> dict[str, Any]:
    """Graph metadata every exported file carries: who wrote it, and ``dt`` when known."""
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
    names = valid_names(graph.nodes)
    nodes = {names[n]: clean_node(v) for n, v in graph.nodes.items()}
    edges = [(names[s], names[d]) for s, d in graph.edges]
    align_shapes(nodes, edges, names)
    return nir_graph(nodes, edges, export_metadata(graph)), names


def write_nir(graph: nir.NIRGraph, path: str | Path) -> dict[str, str]:
    """Write ``graph`` as standard NIR (HDF5) at ``path``; return the node-name map.

    Refuses (StacError listing them) graphs with stac-only nodes. Node metadata that NIR's
    HDF5 format cannot round-trip (stac's placement tables) is dropped; ``dt`` goes into the
    graph metadata. The file is read back with ``type_check=True`` and
    ``validate_structure()`` before it is moved into place.
    """
    graph_out, names = to_nir_graph(graph)
    write_checked(graph_out, Path(path))
    return names


__all__ = ["align_shapes", "stac_only_nodes", "to_nir_graph", "write_nir"]
