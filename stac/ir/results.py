"""What the passes hand on: typed, frozen records in the graph's and the nodes' metadata.

The partition pass writes a :class:`NodePlacement` on every node (``metadata["placement"]``)
and a :class:`Partition` on the graph; the place pass adds its routes to each chip node's
:class:`NodePlacement` and writes a :class:`Placement` on the graph; every pass records its
:class:`Issue` s (``metadata["issues"][<pass>]``) and the legality pass gathers them into a
:class:`Legality` report. Readers (the cost model, the runtime's energy estimate, reporting,
the NIR commands) use the accessors below, never the keys.

The records live here, beside the node types, because the IR file carries them:
:mod:`stac.ir.serialize` writes each as the plain JSON it was before it was typed (so files
written before stay readable) and turns it back into its record on load, by its metadata key
(:data:`GRAPH_RECORDS`, :data:`NODE_RECORDS`). The passes' modules re-export them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

LEVELS = ("error", "warning", "note")


def _plain(record: Any) -> dict[str, Any]:
    """A record as JSON-ready data: nested records as dicts, tuples as lists, None left out,
    arrays kept as arrays (the IR file stores them in safetensors)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if value is None:
            continue
        if dataclasses.is_dataclass(value):
            value = _plain(value)
        elif isinstance(value, tuple):
            value = [_plain(v) if dataclasses.is_dataclass(v) else v for v in value]
        out[f.name] = value
    return out


def _fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` checked against ``cls``'s fields (a ValueError names unknown ones)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}")
    return dict(data)


@dataclass(frozen=True)
class Issue:
    """One line of the legality report."""

    level: str  # "error", "warning" or "note"
    node: str  # the node (layer) it concerns, or "-"
    limit: str  # the profile field it is about (``chip.axons_in_per_core``), or "-"
    message: str

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"issue level must be one of {LEVELS}, got {self.level!r}")

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Issue":
        return cls(**_fields(cls, data))


@dataclass(frozen=True, eq=False)
class NodePlacement:
    """Where one node runs and, on the chip, its cores (partition) and routes (place)."""

    unit: str  # "chip" or "host"
    cores: int = 0
    first_core: int = 0  # global id of its first core; its cores are consecutive
    neurons: int = 0
    synapses: int = 0
    synapse_bytes: int = 0
    blocks: np.ndarray | None = None  # [cores, len(BLOCK_COLUMNS)] int64, one row per core
    row_blocks: int | None = None  # synaptic nodes: blocks of output rows
    col_blocks: int | None = None  # synaptic nodes: blocks of input columns (> 1: split fan-in)
    fanout_cores: int | None = None  # neuron nodes: cores one channel sends to
    units: int | None = None  # neuron nodes: neurons per channel on this chip
    hops_per_spike: float | None = None  # place: mesh hops, summed over destination cores
    chip_crossings_per_spike: float | None = None  # place: chip boundaries crossed
    dest_cores_per_spike: float | None = None  # place: destination cores (messages)
    chips_spanned: int | None = None  # place: chips its cores sit on
    shares_cores_of: str | None = None  # neurons on the cores of the spatial node feeding them

    def __post_init__(self) -> None:
        if self.unit not in ("chip", "host"):
            raise ValueError(f"placement unit must be 'chip' or 'host', got {self.unit!r}")
        if self.unit == "host" and (self.cores or self.blocks is not None):
            raise ValueError("a node placed on the host has no cores or blocks")

    @property
    def on_chip(self) -> bool:
        return self.unit == "chip"

    @property
    def synaptic(self) -> bool:
        """A weighted node split into row x column blocks (else neurons or a relabelling)."""
        return self.col_blocks is not None

    @property
    def routed(self) -> bool:
        """The place pass recorded its routes."""
        return self.dest_cores_per_spike is not None

    def to_dict(self) -> dict[str, Any]:
        return _plain(self) if self.on_chip else {"unit": self.unit}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NodePlacement":
        fields = _fields(cls, data)
        if "blocks" in fields:
            fields["blocks"] = np.asarray(fields["blocks"], dtype=np.int64)
        return cls(**fields)


@dataclass(frozen=True)
class Utilisation:
    """Shares of the used chips' resources the partition fills."""

    neurons: float  # of the used cores' neuron slots
    synaptic_memory: float  # of the used cores' synaptic memory
    cores: float  # of the chips' cores


@dataclass(frozen=True)
class Partition:
    """The partition pass's totals for the graph on one profile."""

    profile: str
    cores: int
    chips: int
    neurons: int
    synapses: int
    synapse_bytes: int
    utilisation: Utilisation
    chip_nodes: int
    host_nodes: int

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Partition":
        fields = _fields(cls, data)
        fields["utilisation"] = Utilisation(**_fields(Utilisation, fields["utilisation"]))
        return cls(**fields)


@dataclass(frozen=True)
class Hops:
    """Traffic per timestep at the stated rates."""

    hops: float  # hop-messages
    chip_crossings: float


@dataclass(frozen=True)
class Traffic:
    """The place pass's traffic, before (sequential placement) and after."""

    sequential: Hops
    placed: Hops
    routes: int
    swaps_accepted: int
    rate: str  # what spike rate the traffic assumes


@dataclass(frozen=True, eq=False)
class Placement:
    """The place pass's result for the graph: each core's slot and the traffic."""

    profile: str
    chips: int
    chip_grid: int  # chips per row of the square-ish grid of chips
    core_slots: np.ndarray  # [cores] slot of each global core id (see place.slot_coordinates)
    traffic: Traffic

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Placement":
        fields = _fields(cls, data)
        t = _fields(Traffic, fields["traffic"])
        fields["traffic"] = Traffic(
            **{**t, "sequential": Hops(**t["sequential"]), "placed": Hops(**t["placed"])}
        )
        fields["core_slots"] = np.asarray(fields["core_slots"], dtype=np.int64)
        return cls(**fields)


@dataclass(frozen=True)
class Legality:
    """Every issue of the passes plus the per-core re-check, errors first, with counts."""

    profile: str
    errors: int
    warnings: int
    notes: int
    issues: tuple[Issue, ...]

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Legality":
        fields = _fields(cls, data)
        fields["issues"] = tuple(Issue.from_dict(i) for i in fields["issues"])
        return cls(**fields)


Issues = dict[str, tuple[Issue, ...]]  # pass name -> its issues


def _issues_to_dict(issues: Issues) -> dict[str, Any]:
    return {name: [i.to_dict() for i in found] for name, found in issues.items()}


def _issues_from_dict(data: dict[str, Any]) -> Issues:
    return {name: tuple(Issue.from_dict(i) for i in found) for name, found in data.items()}


#: Graph metadata key -> (record -> JSON-ready data, data -> record), for the IR file.
GRAPH_RECORDS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "partition": (Partition.to_dict, Partition.from_dict),
    "placement": (Placement.to_dict, Placement.from_dict),
    "legality": (Legality.to_dict, Legality.from_dict),
    "issues": (_issues_to_dict, _issues_from_dict),
}
#: Node metadata key -> (to data, from data).
NODE_RECORDS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "placement": (NodePlacement.to_dict, NodePlacement.from_dict),
}


def _typed(metadata: dict[str, Any] | None, key: str, cls: type, where: str) -> Any:
    value = (metadata or {}).get(key)
    if value is not None and not isinstance(value, cls):
        raise TypeError(
            f"{where} metadata[{key!r}] is a {type(value).__name__}, not a {cls.__name__}"
        )
    return value


def node_placement(node: Any) -> NodePlacement | None:
    """The node's placement, or None when no partition ran."""
    return _typed(getattr(node, "metadata", None), "placement", NodePlacement, "node")


def partition_of(graph: Any) -> Partition | None:
    """The partition's totals, or None when the graph was not partitioned."""
    return _typed(graph.metadata, "partition", Partition, "graph")


def placement_of(graph: Any) -> Placement | None:
    """The place pass's result, or None when the graph was not placed."""
    return _typed(graph.metadata, "placement", Placement, "graph")


def legality_of(graph: Any) -> Legality | None:
    """The legality report, or None when the legality pass did not run."""
    return _typed(graph.metadata, "legality", Legality, "graph")


def issues_of(graph: Any) -> Issues:
    """Every pass's recorded issues, by pass name."""
    return dict(_typed(graph.metadata, "issues", dict, "graph") or {})


__all__ = [
    "GRAPH_RECORDS",
    "Hops",
    "Issue",
    "Issues",
    "LEVELS",
    "Legality",
    "NODE_RECORDS",
    "NodePlacement",
    "Partition",
    "Placement",
    "Traffic",
    "Utilisation",
    "issues_of",
    "legality_of",
    "node_placement",
    "partition_of",
    "placement_of",
]
