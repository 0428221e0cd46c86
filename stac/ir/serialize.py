"""Lossless save/load of a stac IR graph: JSON structure plus safetensors arrays.

No pickle anywhere: arrays go to a safetensors file (deduplicated, so a tied embedding and LM
head are stored once), everything else is JSON. Loading rebuilds each node through its
``from_dict``, so every node's ``__post_init__`` checks run again. The passes' typed results
(:mod:`stac.ir.results`) are written as plain JSON under their metadata key and rebuilt into
their records on load, so a file keeps the layout it had before they were typed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import nir
import numpy as np
from safetensors.numpy import load_file, save_file

from stac.ir.graph import make_graph
from stac.ir.nodes import StacNode, stac_node_types
from stac.ir.results import GRAPH_RECORDS, NODE_RECORDS

FORMAT = "stac-ir"
VERSION = 1


class IRFormatError(ValueError):
    """The IR file is not a stac IR file this version can read."""


def _nir_types() -> dict[str, type]:
    return {
        name: obj
        for name, obj in vars(nir).items()
        if isinstance(obj, type) and issubclass(obj, nir.NIRNode) and obj is not nir.NIRGraph
    }


def _encode(value: Any, key: str, arrays: dict[str, np.ndarray], ids: dict[int, str]) -> Any:
    if isinstance(value, np.ndarray):
        if id(value) not in ids:
            ids[id(value)] = key
            arrays[key] = np.ascontiguousarray(value)
        return {"__array__": ids[id(value)]}
    if isinstance(value, dict):
        return {"__dict__": {k: _encode(v, f"{key}.{k}", arrays, ids) for k, v in value.items()}}
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value


def _decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, dict) and "__array__" in value:
        key = value["__array__"]
        if not isinstance(key, str) or key not in arrays:
            raise IRFormatError(f"array {key!r} is referenced but not in the tensors file")
        return arrays[key]
    if isinstance(value, dict) and "__dict__" in value:
        inner = value["__dict__"]
        if not isinstance(inner, dict):
            raise IRFormatError(f"a '__dict__' entry holds {type(inner).__name__}, not a table")
        return {k: _decode(v, arrays) for k, v in inner.items()}
    return value


Records = dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]]


def _records_to_data(metadata: dict[str, Any] | None, records: Records) -> dict[str, Any] | None:
    """``metadata`` with each typed pass result (by its key) as JSON-ready data."""
    if not metadata:
        return metadata
    return {k: records[k][0](v) if k in records else v for k, v in metadata.items()}


def _records_from_data(
    metadata: dict[str, Any] | None, records: Records, where: str
) -> dict[str, Any] | None:
    """The inverse of :func:`_records_to_data`; a malformed record is an IRFormatError."""
    if not metadata:
        return metadata
    if not isinstance(metadata, dict):
        raise IRFormatError(f"{where}: its metadata is {type(metadata).__name__}, not a table")
    try:
        return {k: records[k][1](v) if k in records else v for k, v in metadata.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise IRFormatError(f"{where}: malformed pass result in its metadata ({exc})") from None


def save(graph: nir.NIRGraph, path: str | Path) -> tuple[Path, Path]:
    """Write ``path`` (JSON) and ``path`` with suffix ``.safetensors``; return both paths."""
    path = Path(path)
    tensors_path = path.with_suffix(".safetensors")
    arrays: dict[str, np.ndarray] = {}
    ids: dict[int, str] = {}
    nodes = {}
    for name, node in graph.nodes.items():
        fields = node_fields(node)
        if "metadata" in fields:
            fields["metadata"] = _records_to_data(fields["metadata"], NODE_RECORDS)
        for key in _absent_optionals(node, fields):  # files stay as they were without them
            del fields[key]
        ntype = type(node).__name__
        nodes[name] = {
            "type": ntype,
            "fields": {k: _encode(v, f"{name}.{k}", arrays, ids) for k, v in fields.items()},
        }
    metadata = _encode(_records_to_data(graph.metadata, GRAPH_RECORDS), "metadata", arrays, ids)
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "tensors": tensors_path.name,
        "arrays": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()},
        "nodes": nodes,
        "edges": [list(e) for e in graph.edges],
        "metadata": metadata,
    }
    path.write_text(json.dumps(doc, indent=1))
    save_file(arrays, str(tensors_path))
    return path, tensors_path


def tensors_file(path: Path, name: Any) -> Path:
    """The tensors file an IR file names: a plain file beside it, never a path elsewhere."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
    ):
        raise IRFormatError(
            f"{path}: field 'tensors' must name a file beside it (no directories), got {name!r}"
        )
    file = path.parent / name
    if file.is_symlink() or not file.is_file():
        raise IRFormatError(
            f"{path}: field 'tensors' names {name!r}, which is not a file beside it"
            + (" (a symbolic link)" if file.is_symlink() else "")
        )
    return file


def _read_arrays(path: Path, doc: dict[str, Any]) -> dict[str, np.ndarray]:
    """The tensors file's arrays, each checked: a numeric dtype, finite, and the dtype and
    shape the IR file declares for it (``arrays``, written since the artifact manifest)."""
    file = tensors_file(path, doc["tensors"])
    try:
        arrays = load_file(str(file))
    except Exception as exc:  # safetensors raises its own SafetensorError, OSError...
        raise IRFormatError(f"{file}: not a readable safetensors file ({exc})") from None
    declared = doc.get("arrays")
    if declared is not None:
        if not isinstance(declared, dict):
            raise IRFormatError(f"{path}: field 'arrays' is not a table")
        for key in sorted(set(declared) ^ set(arrays)):
            where = "declared but missing from" if key in declared else "not declared, found in"
            raise IRFormatError(f"{path}: array {key!r} is {where} {file.name}")
    for key, value in arrays.items():
        if value.dtype.kind not in "biuf":
            raise IRFormatError(f"{file.name}: array {key!r} has dtype {value.dtype}")
        if declared is not None:
            spec = declared[key]
            want = (
                (spec.get("dtype"), spec.get("shape")) if isinstance(spec, dict) else (spec, None)
            )
            if want != (str(value.dtype), list(value.shape)):
                raise IRFormatError(
                    f"{file.name}: array {key!r} is {value.dtype} {list(value.shape)}, the IR "
                    f"declares {want[0]} {want[1]}"
                )
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise IRFormatError(
                f"{file.name}: array {key!r} has {bad} non-finite value(s) (NaN or inf)"
            )
    return arrays


# A field annotated with one of these holds that kind of value; other annotations are not
# checked here (the node's own constructor checks what it can).
_SIMPLE = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _absent_optionals(node: Any, fields: dict[str, Any]) -> list[str]:
    """Fields of a stac node that default to None and hold None (e.g. a SignedIF with no
    dead zone): left out of the file, as the loader restores the default."""
    if not dataclasses.is_dataclass(node) or not isinstance(node, StacNode):
        return []
    return [
        f.name
        for f in dataclasses.fields(node)
        if f.default is None and fields.get(f.name, 0) is None
    ]


def _check_field_types(node: Any, where: str) -> None:
    """Each field of a node holds what its class declares: a numeric array where it declares
    ``np.ndarray``, an int / float / bool / str where it declares one."""
    if not dataclasses.is_dataclass(node):
        return
    for f in dataclasses.fields(node):
        if not f.init or f.name in ("metadata", "input_type", "output_type"):
            continue
        value = getattr(node, f.name)
        ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if ann.endswith("ndarray"):
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
                raise IRFormatError(f"{where}: field {f.name!r} is not a numeric array")
        elif ann in _SIMPLE:
            ok = isinstance(value, _SIMPLE[ann]) and (ann == "bool" or not isinstance(value, bool))
            if not ok:
                raise IRFormatError(f"{where}: field {f.name!r} is not a {ann} ({value!r:.40})")


def _edges(raw: list, nodes: dict[str, Any], path: Path) -> list[tuple[str, str]]:
    """The edge list, each a pair of names of nodes in the graph."""
    edges = []
    for e in raw:
        if not (isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e)):
            raise IRFormatError(f"{path}: edge {e!r:.60} is not a pair of node names")
        for end in e:
            if end not in nodes:
                raise IRFormatError(f"{path}: edge {e[0]!r} -> {e[1]!r} names missing node {end!r}")
        edges.append((e[0], e[1]))
    fed = {d for _, d in edges}
    for name, node in nodes.items():
        if not isinstance(node, nir.Input) and name not in fed:
            raise IRFormatError(f"{path}: node {name!r} has no incoming edge")
    return edges


def load(path: str | Path) -> nir.NIRGraph:
    """Read a graph written by :func:`save`."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IRFormatError(f"{path}: not a readable stac IR file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise IRFormatError(f"{path}: not a stac IR file (format field is not {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise IRFormatError(
            f"{path}: stac IR version {doc.get('version')} cannot be read by this stac "
            f"(reads version {VERSION})"
        )
    for key, kind in (("tensors", str), ("nodes", dict), ("edges", list), ("metadata", dict)):
        if not isinstance(doc.get(key), kind):
            raise IRFormatError(f"{path}: field {key!r} is missing or not a {kind.__name__}")
    arrays = _read_arrays(path, doc)
    stac_types = stac_node_types()
    nir_types = _nir_types()
    nodes = {}
    for name, entry in doc["nodes"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("fields"), dict):
            raise IRFormatError(f"{path}: node {name!r} has no 'fields' table")
        try:
            fields = {k: _decode(v, arrays) for k, v in entry["fields"].items()}
        except IRFormatError as exc:
            raise IRFormatError(f"{path}: node {name!r}: {exc}") from None
        ntype = entry.get("type")
        if "metadata" in fields:
            fields["metadata"] = _records_from_data(
                fields["metadata"], NODE_RECORDS, f"{path}: node {name!r}"
            )
        try:
            if ntype in stac_types:
                nodes[name] = stac_types[ntype].from_dict(fields)
            elif ntype in nir_types:
                nodes[name] = nir.dict2NIRNode({**fields, "type": ntype})
            else:
                raise IRFormatError(f"{path}: node {name!r} has unknown type {ntype!r}")
        except (TypeError, ValueError, AssertionError, AttributeError, KeyError) as exc:
            if isinstance(exc, IRFormatError):
                raise
            raise IRFormatError(f"{path}: node {name!r} ({ntype}) is malformed: {exc}") from None
        _check_field_types(nodes[name], f"{path}: node {name!r} ({ntype})")
    edges = _edges(doc["edges"], nodes, path)
    metadata = _records_from_data(_decode(doc["metadata"], arrays), GRAPH_RECORDS, str(path))
    return make_graph(nodes, edges, metadata)


def node_fields(node: Any) -> dict[str, Any]:
    """A node's constructor fields by name, arrays by reference (not copied).

    NIR's own ``to_dict`` deep-copies arrays (``dataclasses.asdict``), which would lose the
    sharing of a tied embedding and LM head (and turns the passes' records in ``metadata`` into
    dicts); it is used only for Input and Output, whose fields are shapes and metadata.
    """
    if isinstance(node, (nir.Input, nir.Output)) or not dataclasses.is_dataclass(node):
        fields = node.to_dict()
        if "metadata" in fields:  # as held, not as asdict flattened its records
            fields["metadata"] = node.metadata
    else:
        fields = {
            f.name: getattr(node, f.name)
            for f in dataclasses.fields(node)
            if f.init and f.name not in ("input_type", "output_type")
        }
    fields.pop("type", None)
    return fields


__all__ = ["IRFormatError", "StacNode", "load", "node_fields", "save"]
