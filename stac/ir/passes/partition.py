"""Partition pass: decide where each op runs, and split chip ops into cores within every limit.

Where: a node runs on the chip when the profile's ``[ops]`` table says so and, for a synaptic
or routing node, when all its inputs are spikes (``common.chip_assignment``), unless the graph's
``metadata["host_nodes"]`` keeps it on the host by choice (a deployment option, e.g. the LM
head off chip as in Abreu et al. 2025; :func:`keep_on_host`). Everything else runs on the host
profile.

How many cores, for a synaptic node ``[out, in]`` (Linear, Affine) fed by sources whose
channels take ``u`` input axons each (the ``units`` of the source's op, e.g. 2 for a signed
train on binary-spike chips):

- a core holds a block of ``rows x cols`` synapses and the ``rows`` compartments they feed;
- ``cols * u <= chip.axons_in_per_core`` (fan-in) and ``rows * cols * weight_bits <= 8 *
  chip.synaptic_memory_bytes_per_core``; ``rows <= chip.neurons_per_core`` and
  ``rows <= chip.axons_out_per_core`` (one route out per compartment);
- when a neuron's fan-in is larger than one core takes, its inputs are split over ``k``
  column blocks whose partial sums travel as graded spikes to accumulator compartments (extra
  cores). On a chip without graded spikes no split can fit: a hard error naming the layer;
- blocks are balanced, so every synapse and compartment is in exactly one core.

Spatial nodes (Conv2d, SumPool2d, AvgPool2d with ``[C, H, W]`` outputs) are tiled by space and
channel instead (:mod:`stac.ir.passes.spatial`): block rows are outputs in (x, y, c) order; a
tile's core stores the kernels of its channels once; the neuron node that is a spatial node's
only consumer shares its cores (``NodePlacement.shares_cores_of``); a tile's input axons are
one per source core reaching it, a core's output axons one per destination core each of its
neurons reaches (tiles shrink until they fit).

Neuron nodes take ``channels x units`` neurons; each channel sends to every
core that holds its column (``fanout`` destination cores), so a core holds at most
``axons_out_per_core / (units x fanout)`` channels, and a channel whose fanout exceeds
``chip.neuron_fanout_cores`` is a hard error (stac generates no relay neurons). Flatten is a
relabelling: no cores.

Cores get consecutive global ids in data-flow order; every node gets a
:class:`~stac.ir.results.NodePlacement` (``node_placement(node)``; a chip node's lists its
blocks, ``BLOCK_COLUMNS``), and the graph a :class:`~stac.ir.results.Partition` with the
totals (``partition_of(graph)``). A
network needing more than ``chip.max_chips`` chips is an error. Errors are recorded as issues
for the legality pass, which raises; the partition itself always completes, so that a report
can show every problem at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from stac.errors import StacError
from stac.ir.graph import make_graph, output_shape, predecessors, successors
from stac.ir.nodes import Readout
from stac.ir.passes import spatial as sp
from stac.ir.passes.common import (
    WEIGHTED_TYPES,
    chip_assignment,
    is_neuron,
    issue,
    node_order,
    readouts_follow_their_maps,
    rebuild,
    with_metadata,
)
from stac.ir.results import (
    Issue,
    NodePlacement,
    Partition,
    Utilisation,
    node_placement,
    partition_of,
)
from stac.profiles import Profile

#: Columns of a placement's ``blocks`` array, one row per core. Accumulator cores have
#: ``col0 = col1 = -1``; neuron cores have ``col0 = col1 = 0``.
BLOCK_COLUMNS = (
    "row0",
    "row1",
    "col0",
    "col1",
    "neurons",
    "synapses",
    "synapse_bytes",
    "axons_in",
    "axons_out",
)


@dataclass(frozen=True)
class Limits:
    """The profile's per-core limits, as integers."""

    neurons: int
    memory_bits: int
    axons_in: int
    axons_out: int
    fanout: int
    weight_bits: int
    graded: bool

    @classmethod
    def of(cls, p: Profile) -> "Limits":
        c = p.values["chip"]
        return cls(
            int(c["neurons_per_core"]),
            8 * int(c["synaptic_memory_bytes_per_core"]),
            int(c["axons_in_per_core"]),
            int(c["axons_out_per_core"]),
            int(c["neuron_fanout_cores"]),
            int(c["weight_bits"]),
            bool(p.get("spikes", "graded")),
        )


def _ranges(total: int, parts: int) -> list[tuple[int, int]]:
    """``total`` items in ``parts`` balanced consecutive ranges."""
    edges = [total * i // parts for i in range(parts + 1)]
    return [(edges[i], edges[i + 1]) for i in range(parts)]


def _bytes(synapses: int, bits: int) -> int:
    return (synapses * bits + 7) // 8


class _Partitioner:
    def __init__(self, graph: nir.NIRGraph, profile: Profile) -> None:
        self.graph, self.profile, self.lim = graph, profile, Limits.of(profile)
        keep = host_nodes(graph)
        assigned = chip_assignment(graph, profile)
        self.pre, self.post = predecessors(graph), successors(graph)
        self.on_chip = readouts_follow_their_maps(
            graph, {n: on and n not in keep for n, on in assigned.items()}, self.pre
        )
        self.issues: list[Issue] = []
        self.splits: dict[str, dict[str, Any]] = {}
        self.spatial = {n for n, v in graph.nodes.items() if self.on_chip[n] and sp.is_spatial(v)}
        self.fused = self._fused()  # neuron node -> the spatial node whose cores hold it
        self.reach: dict[str, np.ndarray] = {}  # spatial node -> [input positions, tiles]
        self.tiles: dict[str, np.ndarray] = {}  # spatial node -> [tiles, 2] ranges, (x, y, c)

    def _fused(self) -> dict[str, str]:
        """Neuron nodes that are the only consumer of a spatial node, with its output shape:
        their neurons are the spatial node's compartments, on its cores."""
        out = {}
        for name in self.spatial:
            post = self.post[name]
            if len(post) != 1 or not self.on_chip[post[0]]:
                continue
            n = post[0]
            node = self.graph.nodes[n]
            if (
                is_neuron(node)
                and self.pre[n] == [name]
                and int(np.prod(output_shape(node))) == sp.geometry(self.graph.nodes[name]).outputs
            ):
                out[n] = name
        return out

    # -- helpers following Flatten, which is only a relabelling -------------------------
    def _is_relabel(self, name: str) -> bool:
        """A node that adds no hardware: a Flatten (a relabelling) or a Readout (the send rule
        of its map's own compartments)."""
        return isinstance(self.graph.nodes[name], (nir.Flatten, Readout)) and self.on_chip[name]

    def units_in(self, name: str) -> int:
        """Input axons per input channel of ``name``: the sum of its sources' units."""
        total = 0
        for p in self.pre[name]:
            total += (
                self.units_in(p) if self._is_relabel(p) else self.profile.units(self.graph.nodes[p])
            )
        return max(total, 1)

    def dest_cores(self, name: str) -> int:
        """Cores one channel of ``name`` sends to (1 for a route to the host)."""
        total = 0
        for s in self.post[name]:
            if not self.on_chip[s]:
                total += 1
            elif self._is_relabel(s):
                total += self.dest_cores(s)
            elif s in self.reach:  # the tiles one input position reaches, at most
                total += int(self.reach[s].sum(axis=1).max())
            elif s in self.splits and "row_blocks" in self.splits[s]:
                total += self.splits[s]["row_blocks"]
            else:
                total += 1
        return max(total, 1)

    # -- synaptic nodes -----------------------------------------------------------------
    def weights(self, name: str, node: Any) -> dict[str, Any]:
        lim = self.lim
        w = np.asarray(node.weight)
        out_f, fan_in = int(w.shape[0]), int(np.prod(w.shape[1:]))
        u = self.units_in(name)
        conv = not isinstance(node, (nir.Linear, nir.Affine))
        rows_out = int(np.prod(output_shape(node))) if conv else out_f
        kernel_bits = int(w.size) * lim.weight_bits
        c_max = min(
            lim.axons_in // u,
            (lim.memory_bits - (kernel_bits if conv else 0)) // (1 if conv else lim.weight_bits),
        )
        if conv and kernel_bits > lim.memory_bits:
            self.issues.append(
                issue(
                    "error",
                    name,
                    "chip.synaptic_memory_bytes_per_core",
                    f"{name}: its {_bytes(int(w.size), lim.weight_bits)}-byte "
                    "kernel does not fit one core's synaptic memory",
                )
            )
            c_max = lim.axons_in // u
        if c_max < 1:
            self.issues.append(
                issue(
                    "error",
                    name,
                    "chip.axons_in_per_core",
                    f"{name}: one input channel needs {u} axons, more than a core's {lim.axons_in}",
                )
            )
            c_max = 1
        col_blocks = 1
        if fan_in > c_max:
            col_blocks = math.ceil(fan_in / c_max)
            limit = (
                "chip.axons_in_per_core"
                if lim.axons_in // u <= c_max
                else "chip.synaptic_memory_bytes_per_core"
            )
            if lim.graded:
                self.issues.append(
                    issue(
                        "note",
                        name,
                        limit,
                        f"{name}: fan-in {fan_in} x {u} axon(s) exceeds one core ({limit} allows "
                        f"{c_max} inputs); split over {col_blocks} cores whose partial sums go to "
                        "accumulator neurons as graded spikes",
                    )
                )
            else:
                self.issues.append(
                    issue(
                        "error",
                        name,
                        limit,
                        f"{name}: fan-in {fan_in} x {u} axon(s) exceeds one core ({limit} allows "
                        f"{c_max} inputs) and {self.profile.name} spikes carry no payload "
                        "(spikes.graded = false), so no split of its neurons can fit",
                    )
                )
        cols = _ranges(fan_in, col_blocks)
        widest = max(b - a for a, b in cols)
        per_row_bits = 0 if conv else widest * lim.weight_bits
        mem_rows = (
            (lim.memory_bits - (kernel_bits if conv else 0)) // per_row_bits
            if per_row_bits
            else lim.neurons
        )
        axon_rows = lim.axons_in // (widest * u) if conv else lim.neurons
        r_max = max(1, min(lim.neurons, lim.axons_out, mem_rows, max(axon_rows, 1)))
        row_blocks = math.ceil(rows_out / r_max)
        blocks = []
        for r0, r1 in _ranges(rows_out, row_blocks):
            for c0, c1 in cols:
                syn = (r1 - r0) * (c1 - c0)
                axons = (c1 - c0) * u if not conv else min((c1 - c0) * u * (r1 - r0), fan_in * u)
                blocks.append(
                    (
                        r0,
                        r1,
                        c0,
                        c1,
                        r1 - r0,
                        syn,
                        _bytes(int(w.size), lim.weight_bits)
                        if conv
                        else _bytes(syn, lim.weight_bits),
                        axons,
                        r1 - r0,
                    )
                )
        if col_blocks > 1:  # accumulators: fan-in col_blocks partial sums per neuron
            caps = {
                "chip.neurons_per_core": lim.neurons,
                "chip.axons_out_per_core": lim.axons_out,
                "chip.axons_in_per_core": lim.axons_in // col_blocks,
                "chip.synaptic_memory_bytes_per_core": lim.memory_bits
                // (col_blocks * lim.weight_bits),
            }
            per_acc = min(caps.values())
            if per_acc < 1:
                limit = min(caps, key=caps.__getitem__)
                self.issues.append(
                    issue(
                        "error",
                        name,
                        limit,
                        f"{name}: an accumulator neuron would gather {col_blocks} partial "
                        "sums, more "
                        f"than one core takes ({limit}); accumulation trees are not generated",
                    )
                )
                per_acc = 1
            for r0, r1 in _ranges(rows_out, math.ceil(rows_out / per_acc)):
                syn = (r1 - r0) * col_blocks
                blocks.append(
                    (r0, r1, -1, -1, r1 - r0, syn, _bytes(syn, lim.weight_bits), syn, r1 - r0)
                )
        return {"row_blocks": row_blocks, "col_blocks": col_blocks, "blocks": blocks}

    # -- spatial layers (convolution, pooling): tiles by space and channel ----------------
    def _channel_dests(self, name: str, channels: int) -> np.ndarray:
        """Destination cores of each channel of ``name`` (NIR flat order)."""
        d = np.zeros(channels, np.int64)
        for s in self.post[name]:
            if not self.on_chip[s]:
                d += 1
            elif self._is_relabel(s):
                d += self._channel_dests(s, channels)
            elif s in self.reach:
                d += np.tile(self.reach[s].sum(axis=1), channels // len(self.reach[s]))
            elif s in self.splits and "row_blocks" in self.splits[s]:
                d += self.splits[s]["row_blocks"]
            else:
                d += 1
        return d

    def spatial_tiles(self, name: str, node: Any) -> dict[str, Any]:
        """Tiles of a spatial node's outputs (see :mod:`stac.ir.passes.spatial`); the neuron
        node fused into it (if any) gets the same cores."""
        lim, g = self.lim, sp.geometry(node)
        emitter = next((n for n, s in self.fused.items() if s == name), None)
        units = self.profile.units(self.graph.nodes[emitter]) if emitter else 1
        channel_cap = lim.memory_bits // (g.kernel_weights(1) * lim.weight_bits)
        if channel_cap < 1:
            self.issues.append(
                issue(
                    "error",
                    name,
                    "chip.synaptic_memory_bytes_per_core",
                    f"{name}: the kernel of one output channel "
                    f"({_bytes(g.kernel_weights(1), lim.weight_bits)} bytes) does not fit one "
                    "core's synaptic memory",
                )
            )
            channel_cap = 1
        per_row = (self._channel_dests(emitter or name, g.outputs) * units)[
            sp.xyc_to_flat((g.c_out, g.h_out, g.w_out))
        ]
        cum = np.concatenate([[0], np.cumsum(per_row)])
        cap = max(1, min(lim.neurons, lim.axons_out) // units)
        while True:  # shrink the tiles until each core's output axons fit
            ranges = np.asarray(sp.tiles(g, cap, channel_cap), dtype=np.int64)
            axons = cum[ranges[:, 1]] - cum[ranges[:, 0]]
            worst = int(axons.max())
            if worst <= lim.axons_out or cap == 1:
                break
            cap = min(cap - 1, max(1, cap * lim.axons_out // worst))
        if worst > lim.axons_out:
            self.issues.append(
                issue(
                    "error",
                    name,
                    "chip.axons_out_per_core",
                    f"{name}: one output needs {worst} output axons (its destination cores), "
                    f"above a core's {lim.axons_out}",
                )
            )
        self.reach[name] = sp.reach(g, ranges)
        self.tiles[name] = ranges
        blocks = [
            (
                r0,
                r1,
                0,
                g.fan_in,
                0 if emitter else r1 - r0,
                (r1 - r0) * g.fan_in,
                _bytes(g.kernel_weights(sp.tile_channels(g, r0, r1)), lim.weight_bits),
                0,
                0 if emitter else int(a),
            )
            for (r0, r1), a in zip(ranges.tolist(), axons, strict=False)
        ]
        if emitter:
            self.splits[emitter] = {
                "units": units,
                "fanout_cores": int(per_row.max()) // units,
                "shares_cores_of": name,
                "blocks": [
                    (r0, r1, 0, 0, (r1 - r0) * units, 0, 0, 0, int(a))
                    for (r0, r1), a in zip(ranges.tolist(), axons, strict=False)
                ],
            }
        return {"row_blocks": len(ranges), "col_blocks": 1, "blocks": blocks}

    def _source_cores(self, name: str) -> np.ndarray | None:
        """Local core of each output channel of ``name`` (None: it runs on the host)."""
        if not self.on_chip[name]:
            return None
        if self._is_relabel(name):
            return self._source_cores(self.pre[name][0])
        ranges = np.asarray(
            [b[:2] for b in self.splits[name]["blocks"] if b[2] >= 0], dtype=np.int64
        ).reshape(-1, 2)
        channels = int(np.prod(output_shape(self.graph.nodes[name])))
        tiled = name in self.spatial or name in self.fused
        return sp.core_of_channel(
            ranges, channels, output_shape(self.graph.nodes[name]) if tiled else None
        )

    def _fill_axons_in(self) -> None:
        """A tile's input axons: one per source core that reaches it (Loihi 2's convolutional
        axons: the spike carries its position; benchmark.ipynb's AxonIn column, 1-2 per
        convolution core), times the source's units."""
        col = BLOCK_COLUMNS.index("axons_in")
        for name in self.spatial:
            g, ranges = sp.geometry(self.graph.nodes[name]), self.tiles[name]
            total = np.zeros(len(ranges), np.int64)
            reach = np.tile(self.reach[name], (g.c_in, 1)).astype(np.int64)
            for p in self.pre[name]:
                src = self._source_cores(p)
                if src is None or len(src) != len(reach):
                    total += 1
                    continue
                hits = np.zeros((int(src.max()) + 1, len(ranges)), np.int64)
                np.add.at(hits, src, reach)
                total += (hits > 0).sum(axis=0) * self.units_in(name)
            blocks = [list(b) for b in self.splits[name]["blocks"]]
            for b, a in zip(blocks, total.tolist(), strict=False):
                b[col] = a
                if a > self.lim.axons_in:
                    self.issues.append(
                        issue(
                            "error",
                            name,
                            "chip.axons_in_per_core",
                            f"{name}: a tile is reached by {a} input axons (source cores x "
                            f"units), above a core's {self.lim.axons_in}",
                        )
                    )
                    break
            self.splits[name]["blocks"] = [tuple(b) for b in blocks]

    # -- neurons and pooling ------------------------------------------------------------
    def neurons(self, name: str, node: Any) -> dict[str, Any]:
        lim = self.lim
        channels = int(np.prod(output_shape(node)))
        units = self.profile.units(node)
        fanout = self.dest_cores(name)
        n_in = max(len(self.pre[name]), 1)
        if fanout > lim.fanout:
            self.issues.append(
                issue(
                    "error",
                    name,
                    "chip.neuron_fanout_cores",
                    f"{name}: each neuron must reach {fanout} cores, above the "
                    f"{lim.fanout} a {self.profile.name} neuron can address (no relay neurons are "
                    "generated)",
                )
            )
        caps = {
            "chip.neurons_per_core": lim.neurons // units,
            "chip.axons_out_per_core": lim.axons_out // (units * fanout),
            "chip.axons_in_per_core": lim.axons_in // n_in,
        }
        per_core = min(caps.values())
        if per_core < 1:
            limit = min(caps, key=caps.__getitem__)
            self.issues.append(
                issue(
                    "error",
                    name,
                    limit,
                    f"{name}: one channel ({units} neuron(s), {units * fanout} output and {n_in} "
                    f"input axon(s)) does not fit one core ({limit})",
                )
            )
            per_core = 1
        elif (
            per_core < channels
            and per_core == caps["chip.axons_out_per_core"]
            and per_core < caps["chip.neurons_per_core"]
        ):  # a note only when the fan-out is what splits the layer over more cores
            self.issues.append(
                issue(
                    "note",
                    name,
                    "chip.axons_out_per_core",
                    f"{name}: fan-out to {fanout} core(s) lets a core hold {per_core} channels, "
                    f"so its {channels} channels take {math.ceil(channels / per_core)} cores "
                    f"(neurons_per_core alone would allow {caps['chip.neurons_per_core']} "
                    "per core)",
                )
            )
        blocks = [
            (r0, r1, 0, 0, (r1 - r0) * units, 0, 0, (r1 - r0) * n_in, (r1 - r0) * units * fanout)
            for r0, r1 in _ranges(channels, math.ceil(channels / per_core))
        ]
        return {"fanout_cores": fanout, "units": units, "blocks": blocks}

    def run(self) -> nir.NIRGraph:
        order = node_order(self.graph)
        for name in reversed(order):  # consumers first: a neuron's fanout needs their splits
            node = self.graph.nodes[name]
            if name in self.spatial:
                self.splits[name] = self.spatial_tiles(name, node)
            elif self.on_chip[name] and isinstance(node, WEIGHTED_TYPES):
                self.splits[name] = self.weights(name, node)
        for name in order:
            node = self.graph.nodes[name]
            if self.on_chip[name] and name not in self.splits and not self._is_relabel(name):
                self.splits[name] = self.neurons(name, node)
        self._fill_axons_in()
        nodes: dict[str, Any] = {}
        next_core = 0
        firsts: dict[str, int] = {}  # node -> its first core
        totals = {"neurons": 0, "synapses": 0, "synapse_bytes": 0}
        for name in order:
            node = self.graph.nodes[name]
            if not self.on_chip[name]:
                nodes[name] = with_metadata(node, placement=NodePlacement("host"))
                continue
            split = self.splits.get(name, {"blocks": []})
            blocks = np.asarray(split.pop("blocks"), dtype=np.int64).reshape(-1, len(BLOCK_COLUMNS))
            sums = {k: int(blocks[:, BLOCK_COLUMNS.index(k)].sum()) for k in totals}
            for k in totals:
                totals[k] += sums[k]
            cores = int(blocks.shape[0])
            shared = split.get("shares_cores_of")
            first = firsts[shared] if shared else next_core
            firsts[name] = first
            nodes[name] = with_metadata(
                node,
                placement=NodePlacement(
                    "chip",
                    cores=cores,
                    first_core=first,
                    neurons=sums["neurons"],
                    synapses=sums["synapses"],
                    synapse_bytes=sums["synapse_bytes"],
                    **split,
                    blocks=blocks,
                ),
            )
            next_core += 0 if shared else cores
        nodes = {n: nodes[n] for n in self.graph.nodes}  # keep the graph's own order
        return self._finish(nodes, next_core, totals)

    def _finish(self, nodes: dict[str, Any], cores: int, totals: dict[str, int]) -> nir.NIRGraph:
        c = self.profile.values["chip"]
        chips = math.ceil(cores / c["cores_per_chip"])
        if chips > c["max_chips"]:
            self.issues.append(
                issue(
                    "error",
                    "-",
                    "chip.max_chips",
                    f"the network needs {chips} {self.profile.name} chips ({cores} cores); the "
                    f"profile allows at most {c['max_chips']}",
                )
            )
        host = [n for n, on in self.on_chip.items() if not on]
        if host:
            kinds = sorted({type(self.graph.nodes[n]).__name__ for n in host} - {"Input", "Output"})
            self.issues.append(
                issue(
                    "note",
                    "-",
                    "ops",
                    f"{len(host)} node(s) run on the host "
                    f"({', '.join(kinds) or 'Input/Output only'})",
                )
            )
        util = Utilisation(
            neurons=totals["neurons"] / (cores * self.lim.neurons) if cores else 0.0,
            synaptic_memory=8 * totals["synapse_bytes"] / (cores * self.lim.memory_bits)
            if cores
            else 0.0,
            cores=cores / (chips * c["cores_per_chip"]) if chips else 0.0,
        )
        summary = Partition(
            profile=self.profile.name,
            cores=cores,
            chips=chips,
            **totals,
            utilisation=util,
            chip_nodes=len(self.on_chip) - len(host),
            host_nodes=len(host),
        )
        return rebuild(self.graph, nodes, "partition", self.issues, partition=summary)


def host_nodes(graph: nir.NIRGraph) -> set[str]:
    """Nodes the graph's ``metadata["host_nodes"]`` keeps on the host; an unknown name is an
    error naming it."""
    keep = set(graph.metadata.get("host_nodes", ()))
    unknown = sorted(keep - set(graph.nodes))
    if unknown:
        raise StacError(f"host_nodes names {unknown[0]!r}, which is not a node of the graph")
    return keep


def keep_on_host(graph: nir.NIRGraph, names: list[str]) -> nir.NIRGraph:
    """``graph`` with ``names`` kept on the host by the partition pass (each must be a node)."""
    out = make_graph(
        dict(graph.nodes), graph.edges, {**graph.metadata, "host_nodes": sorted(set(names))}
    )
    host_nodes(out)
    return out


def partition(graph: nir.NIRGraph, profile: Profile) -> nir.NIRGraph:
    """Assign every node to chip or host and split chip nodes into cores (see module doc)."""
    return _Partitioner(graph, profile).run()


__all__ = [
    "BLOCK_COLUMNS",
    "host_nodes",
    "keep_on_host",
    "NodePlacement",
    "Partition",
    "Utilisation",
    "node_placement",
    "partition",
    "partition_of",
    "with_metadata",
]
