"""The cost model: simulator counts + a hardware profile -> energy and latency per token.

Model ``stac-stage-sync-v3``, an estimate from operation counts, not a measurement:

- A *stage* is a connected group of chip-placed nodes (for a converted transformer: one
  SignedIF encoder and the linear map it drives). Stages are separated by host ops, which
  need the T-step result, so stages and host ops run one after another per token.
- Per stage and timestep, each chip node's work -- synaptic ops, neuron updates (times the
  profile's units per channel, e.g. two binary neurons for a signed train), and messages
  sent (one per spike and destination core, plus the partial sums of layers split into
  column blocks) -- is spread evenly over its cores; the step takes the slowest core's time,
  plus the mean route of the stage's messages (hops x hop latency), plus the barrier. A stage
  takes T + d steps, d being its synaptic depth (a spike crosses one synapse layer per step,
  as in Lava's Dense).
- Each neuron that fires also costs its core E_spike and t_spike (the soma's spike
  generation, SANA-FE's ``energy/latency_spike_out``), and each message costs the receiving
  core t_message_in and E_message_in (SANA-FE's ``axon_in``). The barrier is the profile's
  ``latency_ns.barrier_by_tiles`` entry for the tiles the network is mapped to.
- Chip dynamic energy = synops x E_synop + updates x E_update + spikes x E_spike + messages x
  (E_spike_out + E_message_in) + hops x E_hop. Chip static energy = static power per chip x
  chips x the token's latency.
- Values crossing between chip nodes and host ops (once per token and edge) cost the chip
  profile's ``[host_link]``: latency + bytes / bandwidth each, and energy per byte.
- A graded spike of b bits is priced as one message; ``graded_upper_*`` price it as b
  binary messages, the upper bound. ``pipeline_items_per_s``: a stream of independent items
  through the stages, the host and the host link at once (see :mod:`stac.sim.pricing`).
- Host ops (and chip nodes' host-side work, such as a per-token gain) cost MACs x E_mac +
  flops x E_flop and take (2 MACs + flops) / throughput on the host profile. A spiking node
  the chip leaves on the host costs one flop per synop and ``host.flops_per_neuron_update``
  flops per neuron update.

Destination cores, hops and chip crossings per spike come from the place pass (each chip
node's :class:`~stac.ir.results.NodePlacement`: ``dest_cores_per_spike``, ``hops_per_spike``,
``chip_crossings_per_spike``). A graph placed without them (an older pipeline) gets every
core of each consumer as a destination and the mean Manhattan distance between two tiles of
one chip's mesh per message, and the report's notes say so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import nir
import numpy as np

from stac.errors import StacError
from stac.ir.analysis import SPIKING_TYPES, connected_groups
from stac.ir.graph import output_shape, successors
from stac.ir.passes.common import WEIGHTED_TYPES, moved_host_ops
from stac.ir.results import NodePlacement, node_placement
from stac.profiles import Profile
from stac.sim import pricing
from stac.sim.semantics import NodeStats

MODEL = "stac-stage-sync-v3"
ASSUMPTIONS = [
    "estimate from operation counts, not a measurement",
    "per-operation energies and latencies are the profile's (for Loihi 2: Loihi 1 figures "
    "calibrated by SANA-FE, since Loihi 2's are unpublished)",
    "stage-synchronous schedule: chip stages and host ops run one after another per token; "
    "within a stage all cores run concurrently, one barrier per timestep",
    "a chip node's work is spread evenly over its cores (no per-core imbalance); a stage "
    "takes T timesteps plus one per synapse layer on its longest path",
    "each timestep adds the mean mesh route of the stage's messages (not the longest; no "
    "congestion)",
    "one message per spike and destination core, priced at the profile's spike_out figures "
    "at the sender and message_in at the receiver, plus the soma's spike figure per neuron "
    "that fires",
    "every neuron pays the full neuron_update every timestep (SANA-FE charges the update part "
    "to active neurons only; stac does not count idle neurons), an upper bound",
    "graded spikes: priced as one message each (lower bound; no profile gives a per-bit "
    "figure); the upper bound prices a b-bit spike as b binary messages (graded_upper_*)",
    "chip-to-chip links are priced as mesh hops; spikes leaving the chip for the host are "
    "priced as one message each; each value crossing between a chip node and a host op is "
    "priced once per token on the chip profile's host link (assumed figures, see its sources)",
    "pipeline throughput assumes independent items (a batch of prompts): the tokens of one "
    "sequence cannot overlap, since each needs the one before; a batch of B conversations "
    "keeps B tokens in flight, the chips' static power shared by the tokens they finish",
    "host energy counts arithmetic only (per-MAC / per-flop figures), a lower bound",
]


def need(profile: Profile, section: str, name: str) -> float:
    """A profile number the cost model needs; a StacError names the field and the profile."""
    value = profile.values.get(section, {}).get(name)
    if value is None or isinstance(value, bool):
        raise StacError(
            f"hardware profile {profile.name} ({profile.path}) has no field "
            f"'{section}.{name}', which the cost model {MODEL} needs"
        )
    return float(value)


@dataclass(frozen=True)
class ChipRates:
    """A chip profile's per-event figures in joules and seconds."""

    e_synop: float
    e_update: float
    e_message: float
    e_hop: float
    t_synop: float
    t_update: float
    t_message: float
    t_hop: float
    t_barrier: float
    static_w: float
    tiles: tuple[int, int]
    e_spike: float = 0.0
    e_message_in: float = 0.0
    t_spike: float = 0.0
    t_message_in: float = 0.0
    barrier_by_tiles: tuple[tuple[int, float], ...] = ()
    cores_per_tile: int = 1

    @classmethod
    def of(cls, p: Profile) -> "ChipRates":
        pj, ns = 1e-12, 1e-9
        return cls(
            need(p, "energy_pj", "synop") * pj,
            need(p, "energy_pj", "neuron_update") * pj,
            need(p, "energy_pj", "spike_out") * pj,
            need(p, "mesh", "hop_energy_pj") * pj,
            need(p, "latency_ns", "synop") * ns,
            need(p, "latency_ns", "neuron_update") * ns,
            need(p, "latency_ns", "spike_out") * ns,
            need(p, "mesh", "hop_latency_ns") * ns,
            need(p, "latency_ns", "barrier") * ns,
            need(p, "chip", "static_power_w"),
            (int(need(p, "mesh", "tiles_x")), int(need(p, "mesh", "tiles_y"))),
            need(p, "energy_pj", "spike") * pj,
            need(p, "energy_pj", "message_in") * pj,
            need(p, "latency_ns", "spike") * ns,
            need(p, "latency_ns", "message_in") * ns,
            pricing.barrier_table(p),
            int(need(p, "mesh", "cores_per_tile")),
        )


@dataclass(frozen=True)
class HostRates:
    """A host profile's arithmetic figures in joules and operations per second."""

    e_mac: float
    e_flop: float
    flops_per_s: float
    flops_per_update: int  # a spiking neuron's update emulated on the host

    @classmethod
    def of(cls, p: Profile) -> "HostRates":
        return cls(
            need(p, "host", "mac_energy_pj") * 1e-12,
            need(p, "host", "flop_energy_pj") * 1e-12,
            need(p, "host", "throughput_gflops") * 1e9,
            int(need(p, "host", "flops_per_neuron_update")),
        )

    def energy(self, macs: float, flops: float) -> float:
        return macs * self.e_mac + flops * self.e_flop

    def time(self, macs: float, flops: float) -> float:
        return (2 * macs + flops) / self.flops_per_s


def mean_hops(tiles: tuple[int, int]) -> float:
    """Mean Manhattan distance between two uniformly random tiles of an x-by-y mesh."""
    return sum((n * n - 1) / (3 * n) for n in tiles)


@dataclass
class NodeCost:
    """Per-token figures for one node."""

    node: str
    type: str
    unit: str  # "chip" or "host"
    cores: int
    stage: int  # chip stage index, -1 on the host
    spikes: float
    synops: float
    neuron_updates: float  # updates of the model's neurons (spike rate denominator)
    chip_neuron_updates: float  # times the profile's units per channel
    messages: float
    hops: float
    host_macs: float
    host_flops: float
    synop_energy_j: float = 0.0
    update_energy_j: float = 0.0
    message_energy_j: float = 0.0
    mesh_energy_j: float = 0.0
    chip_energy_j: float = 0.0  # dynamic: the four above
    host_energy_j: float = 0.0
    core_step_s: float = 0.0  # one core's busy time per timestep
    latency_s: float = 0.0  # this node's share of the token's latency
    spike_bits: float = 0.0  # payload bits of its spikes (1 each when binary)
    crossings: float = 0.0  # chip boundaries crossed by its messages (included in hops)
    memory_utilisation: float = 0.0  # of its cores' neuron slots or synaptic memory
    busy_fraction: float = 0.0  # of its stage's time that its cores compute
    spike_energy_j: float = 0.0  # soma spike generation, per neuron that fires
    messages_in: float = 0.0  # messages its cores receive (from chip producers)
    link_bytes: float = 0.0  # bytes it receives over the chip-host link
    link_energy_j: float = 0.0
    link_latency_s: float = 0.0  # included in latency_s
    link_values: float = 0.0  # values it receives over the link
    link_transfers: float = 0.0  # transfers it receives (one per chip-host edge)
    link_fixed_s: float = 0.0  # their fixed latency (in link_latency_s)
    graded_extra_energy_j: float = 0.0  # upper bound minus lower, graded spikes
    graded_extra_core_step_s: float = 0.0
    graded_extra_latency_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def _host_levels(graph: nir.NIRGraph, chip_nodes: set[str]) -> dict[str, int]:
    """Per node, the most host ops that wait for a chip node on one path into it (back edges
    of cycles ignored); a host op fed by the host alone (the embedding) counts for nothing."""
    from stac.ir.nir_io.order import execution_order

    order, back = execution_order(graph)
    pre: dict[str, list[str]] = defaultdict(list)
    for s, d in graph.edges:
        if (s, d) not in back:
            pre[d].append(s)
    level: dict[str, int] = {}
    after_chip: dict[str, bool] = {}  # a chip node among its ancestors
    for n in order:
        known = [p for p in pre[n] if p in level]
        after_chip[n] = any(p in chip_nodes or after_chip[p] for p in known)
        level[n] = max(
            (level[p] + (p not in chip_nodes and after_chip[p]) for p in known), default=0
        )
    return level


def _stages(graph: nir.NIRGraph, chip_nodes: set[str]) -> dict[str, int]:
    """Connected groups of chip nodes (edges between two chip nodes join them), each split
    where a host op lies between its members (a node that needs a host op's result starts a
    later stage than the nodes feeding that host op)."""
    stage: dict[str, int] = {}
    levels: dict[str, int] | None = None
    count = 0
    for group in connected_groups(graph, chip_nodes):
        if levels is None and len(group) > 1:
            levels = _host_levels(graph, chip_nodes)
        by_level: dict[int, set[str]] = defaultdict(set)
        for n in group:
            by_level[(levels or {}).get(n, 0)].add(n)
        for level in sorted(by_level):
            for part in connected_groups(graph, by_level[level]):
                for n in part:
                    stage[n] = count
                count += 1
    return stage


def _synaptic_depth(
    graph: nir.NIRGraph, members: set[str], delays: dict[str, int] | None = None
) -> int:
    """Most weighted nodes on one path inside a stage (back edges of cycles ignored), plus the
    ``delays`` (timesteps) of host ops moved onto the chip on that path."""
    from stac.ir.nir_io.order import execution_order

    order, back = execution_order(graph)
    depth: dict[str, int] = {}
    pre: dict[str, list[str]] = defaultdict(list)
    for s, d in graph.edges:
        if s in members and d in members and (s, d) not in back:
            pre[d].append(s)
    for n in order:
        if n in members:
            own = int(isinstance(graph.nodes[n], WEIGHTED_TYPES)) + (delays or {}).get(n, 0)
            depth[n] = own + max((depth[p] for p in pre[n]), default=0)
    return max(depth.values(), default=0)


def node_costs(
    graph: nir.NIRGraph,
    stats: dict[str, NodeStats],
    chip: Profile,
    host: Profile,
    steps: int,
    tokens: int,
    link_width: str = "word",
) -> list[NodeCost]:
    """Price every node's counts (``stats`` summed over ``tokens`` tokens) per token; values on
    the host link at ``link_width`` (:data:`stac.sim.link_width.WIDTHS`)."""
    rates, hrates = ChipRates.of(chip), HostRates.of(host)
    link = pricing.LinkRates.of(chip, need)
    npc = need(chip, "chip", "neurons_per_core")
    mem = need(chip, "chip", "synaptic_memory_bytes_per_core")
    post = successors(graph)
    placement = {n: node_placement(v) or NodePlacement("host") for n, v in graph.nodes.items()}
    on_chip = {n for n, p in placement.items() if p.on_chip}
    moved = moved_host_ops(graph, chip) & on_chip
    stage_of = _stages(graph, on_chip)
    per = 1.0 / tokens
    rows: list[NodeCost] = []
    for name, node in graph.nodes.items():
        s, place = stats[name], placement[name]
        cores = place.cores
        units = chip.units(node)
        row = NodeCost(
            name,
            type(node).__name__,
            "chip" if name in on_chip else "host",
            cores,
            stage_of.get(name, -1),
            s.spikes * per,
            s.synops * per,
            s.neuron_updates * per,
            s.neuron_updates * units * per,
            0.0,
            0.0,
            (s.host_macs + s.dense_macs) * per,
            s.host_flops * per,
            spike_bits=(s.spike_bits or s.spikes) * per,
        )  # unrecorded: binary
        if name in moved:
            _as_chip_op(row, graph, name, chip, steps)
        if name in on_chip:
            _traffic(
                row, node, place, post[name], placement, on_chip, steps, mean_hops(rates.tiles)
            )
            row.synop_energy_j = row.synops * rates.e_synop
            row.update_energy_j = row.chip_neuron_updates * rates.e_update
            row.message_energy_j = row.messages * rates.e_message
            row.mesh_energy_j = row.hops * rates.e_hop
            row.spike_energy_j = row.spikes * rates.e_spike
            row.core_step_s = (
                row.synops * rates.t_synop
                + row.chip_neuron_updates * rates.t_update
                + row.messages * rates.t_message
                + row.spikes * rates.t_spike
            ) / (max(cores, 1) * steps)
            neurons, syn = place.neurons, place.synapse_bytes
            row.memory_utilisation = (
                max(neurons / (cores * npc), syn / (cores * mem)) if cores else 0.0
            )
        else:
            spiking_updates = row.neuron_updates if isinstance(node, SPIKING_TYPES) else 0.0
            if (row.synops or spiking_updates) and not row.host_flops:
                # Event work the executor counted as chip work, but this profile leaves the
                # node on the host: price it there (one add per synop, a few flops per update).
                row.host_flops = row.synops + hrates.flops_per_update * spiking_updates
                row.notes.append(
                    f"{name} ({row.type}) runs on the host on {chip.name}: its "
                    f"{row.synops:.4g} synaptic ops per token are priced as one host flop each"
                    + (
                        f" and its neuron updates as {hrates.flops_per_update} flops each"
                        if spiking_updates
                        else ""
                    )
                )
        row.host_energy_j = hrates.energy(row.host_macs, row.host_flops)
        row.latency_s = hrates.time(row.host_macs, row.host_flops)
        rows.append(row)
    by_name = {r.node: r for r in rows}
    pricing.add_receive(by_name, graph, on_chip, placement, rates, steps)
    for row in rows:
        pricing.add_graded_bounds(row, rates, steps)
        row.chip_energy_j = (
            row.synop_energy_j
            + row.update_energy_j
            + row.spike_energy_j
            + row.message_energy_j
            + row.mesh_energy_j
        )
    tiles = pricing.mapped_tiles(placement, on_chip, rates.cores_per_tile)
    delays = {n: chip.capabilities[type(graph.nodes[n]).__name__].delay_steps for n in moved}
    _schedule(graph, rows, rates, steps, pricing.barrier_s(rates, tiles), delays)
    caps = {n: chip.capabilities[type(graph.nodes[n]).__name__] for n in moved}
    moved_bits = {n: c.value_bits for n, c in caps.items() if c.value_bits}
    pricing.add_host_link(by_name, graph, on_chip, link, steps, link_width, moved_bits)
    if "chip_host_ops" in graph.metadata and rows:
        from stac.ir.passes.onchip import host_ops_left

        left = host_ops_left(graph, on_chip)
        if left:
            rows[0].notes.append(
                "host ops left on the host (no [capabilities] row with a source in "
                f"{chip.name}): " + ", ".join(f"{t} ({n})" for t, n in sorted(left.items()))
            )
    return rows


def _as_chip_op(row: NodeCost, graph: nir.NIRGraph, name: str, chip: Profile, steps: int) -> None:
    """A host op moved onto the chip (its ``[capabilities]`` row): per value of its output,
    ``units`` neurons updated every step, one graded spike per token, one synaptic op per
    input value plus ``synops_per_value``; no host arithmetic."""
    cap = chip.capabilities[row.type]
    values = float(math.prod(int(x) for x in output_shape(graph.nodes[name])))
    inputs = sum(
        math.prod(int(x) for x in output_shape(graph.nodes[s])) for s, d in graph.edges if d == name
    )
    row.host_macs = row.host_flops = 0.0
    row.neuron_updates = values * steps
    row.chip_neuron_updates = values * cap.units * steps
    row.spikes = row.spike_bits = values
    row.synops = float(inputs) + cap.synops_per_value * values
    row.notes.append(
        f"{row.type} on the chip ({chip.name} [capabilities]): priced per value as "
        f"{cap.units} neuron(s) updated every step, one graded spike per token and "
        f"{cap.synops_per_value} synaptic op(s) beyond its inputs"
    )


def _traffic(
    row: NodeCost,
    node: Any,
    place: NodePlacement,
    consumers: list[str],
    placement: dict[str, NodePlacement],
    on_chip: set[str],
    steps: int,
    fallback_hops: float,
) -> None:
    """Messages, hops and chip crossings a chip node sends per token (``row.spikes`` is
    already per token; partial sums go every step)."""
    to_host = any(d not in on_chip for d in consumers)
    if place.dest_cores_per_spike is not None:
        per_spike = (
            place.dest_cores_per_spike,
            place.hops_per_spike or 0.0,
            place.chip_crossings_per_spike or 0.0,
        )
        if (place.col_blocks or 1) > 1:  # partial sums to accumulators, every step
            channels = int(np.asarray(node.weight).shape[0]) * steps
            row.messages, row.hops, row.crossings = (x * channels for x in per_spike)
            return
    else:
        dest = sum(placement[d].cores for d in consumers if d in on_chip)
        per_spike = (dest, dest * fallback_hops, 0.0)
        row.notes.append(
            "no routes in the placement: each spike goes to every core of its "
            "consumers, each message the mean Manhattan distance between two "
            "tiles of one chip"
        )
    row.messages = row.spikes * (per_spike[0] + int(to_host))
    row.hops = row.spikes * per_spike[1]
    row.crossings = row.spikes * per_spike[2]


def _schedule(
    graph: nir.NIRGraph,
    rows: list[NodeCost],
    rates: ChipRates,
    steps: int,
    barrier: float,
    delays: dict[str, int] | None = None,
) -> None:
    """Add each stage's time (split evenly over its nodes), its cores' busy fraction, and
    the stage time's increase when graded spikes are priced at their upper bound."""
    by_stage: dict[int, list[NodeCost]] = defaultdict(list)
    for r in rows:
        if r.stage >= 0:
            by_stage[r.stage].append(r)
    for members in by_stage.values():
        depth = _synaptic_depth(graph, {r.node for r in members}, delays)
        messages = sum(r.messages for r in members)
        route = sum(r.hops for r in members) / messages if messages else 0.0
        step_s = max(r.core_step_s for r in members) + route * rates.t_hop + barrier
        stage_s = (steps + depth) * step_s
        upper_s = (steps + depth) * (
            max(r.core_step_s + r.graded_extra_core_step_s for r in members)
            + route * rates.t_hop
            + barrier
        )
        for r in members:
            r.latency_s += stage_s / len(members)
            r.graded_extra_latency_s = (upper_s - stage_s) / len(members)
            r.busy_fraction = r.core_step_s * steps / stage_s if stage_s else 0.0


def layer_of(node: str) -> str:
    """Group key for the per-layer table: ``layerN``, ``embed`` or ``head``."""
    head = node.split("_")[0]
    if head.startswith("layer"):
        return head
    return "embed" if node.startswith(("embed", "input")) else "head"


_SUMMED = (
    "spikes",
    "synops",
    "neuron_updates",
    "chip_neuron_updates",
    "messages",
    "hops",
    "crossings",
    "spike_bits",
    "messages_in",
    "link_bytes",
    "host_macs",
    "host_flops",
    "synop_energy_j",
    "update_energy_j",
    "spike_energy_j",
    "message_energy_j",
    "mesh_energy_j",
    "chip_energy_j",
    "host_energy_j",
    "link_energy_j",
    "link_latency_s",
    "link_values",
    "link_transfers",
    "link_fixed_s",
    "graded_extra_energy_j",
    "graded_extra_latency_s",
    "latency_s",
)


def _spike_rate(rows: list[NodeCost]) -> float:
    spiking = {t.__name__ for t in SPIKING_TYPES}
    updates = sum(r.neuron_updates for r in rows if r.type in spiking)
    spikes = sum(r.spikes for r in rows if r.type in spiking)
    return spikes / updates if updates else 0.0


def summarise(
    rows: list[NodeCost], chip: Profile, chips: int, cores: int, group: int = 1
) -> dict[str, Any]:
    """Totals per token, the same figures per layer, and every node's row; the batch sweep
    with ``group`` conversations per lockstep group (:func:`stac.sim.pricing.batch_figures`)."""
    groups: dict[str, list[NodeCost]] = defaultdict(list)
    for r in rows:
        groups[layer_of(r.node)].append(r)
    static_w = need(chip, "chip", "static_power_w") * chips
    layers = {}
    for name, members in groups.items():
        agg: dict[str, Any] = {k: sum(getattr(r, k) for r in members) for k in _SUMMED}
        agg["cores"] = sum(r.cores for r in members)
        agg["spike_rate"] = _spike_rate(members)
        agg["chip_static_energy_j"] = static_w * agg["latency_s"]
        chip_rows = [r for r in members if r.unit == "chip"]
        agg["memory_utilisation"] = (
            (sum(r.memory_utilisation * r.cores for r in chip_rows) / agg["cores"])
            if agg["cores"]
            else 0.0
        )
        agg["busy_fraction"] = (
            (sum(r.busy_fraction * r.cores for r in chip_rows) / agg["cores"])
            if agg["cores"]
            else 0.0
        )
        layers[name] = agg
    total: dict[str, Any] = {k: sum(getattr(r, k) for r in rows) for k in _SUMMED}
    latency = total["latency_s"]
    total.update(
        chip_dynamic_energy_j=total.pop("chip_energy_j"),
        chip_static_energy_j=static_w * latency,
        chip_latency_s=sum(r.latency_s for r in rows if r.unit == "chip"),
        host_latency_s=sum(r.latency_s for r in rows if r.unit == "host"),
        tokens_per_s=1.0 / latency if latency else 0.0,
        chips=chips,
        cores=cores,
        spike_rate=_spike_rate(rows),
    )
    total["energy_j"] = (
        total["chip_dynamic_energy_j"]
        + total["chip_static_energy_j"]
        + total["host_energy_j"]
        + total["link_energy_j"]
    )
    upper_latency = latency + total.pop("graded_extra_latency_s")
    total["graded_upper_latency_s"] = upper_latency
    total["graded_upper_energy_j"] = (
        total["energy_j"]
        + total.pop("graded_extra_energy_j")
        + static_w * (upper_latency - latency)
    )
    total.update(pricing.pipeline(rows))
    total["static_power_w"] = static_w
    total["group"] = group
    total["batches"] = pricing.batch_sweep(total, static_w, group)
    notes = list(dict.fromkeys(n for r in rows for n in r.notes))  # each note once, in order
    graded = [r for r in rows if r.unit == "chip" and r.spike_bits > r.spikes]
    if graded:
        bits = sum(r.spike_bits for r in graded) / sum(r.spikes for r in graded)
        notes.append(
            f"graded spikes: {len(graded)} chip node(s) send {bits:.2f} bits per spike "
            f"on average, priced as one message each ({chip.name} gives no per-bit "
            f"figure); as {bits:.2f} binary messages each (the upper bound) the token "
            f"would cost {total['graded_upper_energy_j'] * 1e3:.4g} mJ and "
            f"{total['graded_upper_latency_s'] * 1e3:.4g} ms"
        )
    return {"total": total, "layers": layers, "nodes": [asdict(r) for r in rows], "notes": notes}
