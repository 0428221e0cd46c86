"""The cost model's terms beyond one core's arithmetic (used by :mod:`stac.sim.cost`).

- *receive*: every message costs the receiving core ``message_in`` (SANA-FE's ``axon_in``);
- *barrier by tiles*: the timestep barrier grows with the tiles the network is mapped to
  (SANA-FE's ``latency_sync`` table);
- *graded bounds*: a graded spike of b bits is priced as one message (the lower bound) and,
  as an upper bound, as b binary messages (any payload can be sent as its bits);
- *host link*: values crossing between chip nodes and host ops, per token, priced by the
  chip profile's ``[host_link]`` (bandwidth, latency per transfer, energy per byte);
- *pipeline*: with chip stages, the host and the host link working on different items of a
  stream at once, the stream's throughput is one item per slowest resource's time;
- *batch*: B conversations with one token each in flight across those resources at once
  (``batch_figures``): tokens/s = min(B / token latency, 1 / slowest resource's time), the
  chips' static power shared by the tokens it finishes, each token's dynamic, host and link
  energy unchanged;
- *coalesced transfers* (``group`` g): the B conversations run as B / g groups of g in lockstep,
  as one call of the runtime (:class:`stac.runtime.processor.TemporalSpikeProcessor`) runs its
  batch: every node over the group's ``[g, ...]`` tensor, so the g values of a chip-host
  boundary cross the link as one transfer (its fixed latency once, its bytes g times); each
  chip stage and the host work through the group's g tokens one after another;
- *link widths* (``width``): a value on the link in 4-byte words (``bytes_per_value``), or at
  the width the artifact bounds it to (:mod:`stac.sim.link_width`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nir

from stac.errors import StacError
from stac.ir.graph import output_shape
from stac.ir.results import NodePlacement
from stac.profiles import Profile
from stac.sim.link_width import WIDTHS, value_bits, value_bytes

if TYPE_CHECKING:
    from stac.sim.cost import ChipRates, NodeCost


@dataclass(frozen=True)
class LinkRates:
    """A chip profile's host interface in bytes per second, seconds and joules."""

    bytes_per_s: float
    latency_s: float
    e_byte: float
    bytes_per_value: int

    @classmethod
    def of(cls, p: Profile, need: Any) -> "LinkRates":
        return cls(
            need(p, "host_link", "bandwidth_gb_s") * 1e9,
            need(p, "host_link", "latency_us") * 1e-6,
            need(p, "host_link", "energy_pj_per_byte") * 1e-12,
            int(need(p, "host_link", "bytes_per_value")),
        )


def barrier_table(p: Profile) -> tuple[tuple[int, float], ...]:
    """``latency_ns.barrier_by_tiles`` as ((tiles, seconds), ...), ascending."""
    table = p.values.get("latency_ns", {}).get("barrier_by_tiles")
    if not isinstance(table, dict):
        raise StacError(
            f"hardware profile {p.name} ({p.path}) has no field "
            "'latency_ns.barrier_by_tiles', which the cost model needs"
        )
    return tuple((int(k), float(v) * 1e-9) for k, v in sorted(table.items()))


def barrier_s(rates: "ChipRates", tiles: int) -> float:
    """The barrier for ``tiles`` mapped tiles: the table entry of the largest tile count not
    above ``tiles``, else the profile's one barrier figure."""
    value = rates.t_barrier
    for n, t in rates.barrier_by_tiles:
        if n <= tiles:
            value = t
    return value


def mapped_tiles(
    placement: dict[str, NodePlacement], on_chip: set[str], cores_per_tile: int
) -> int:
    """Tiles the chip nodes occupy: core slots up to the highest one used, whole tiles."""
    used = max((placement[n].first_core + placement[n].cores for n in on_chip), default=0)
    return math.ceil(used / cores_per_tile)


def add_receive(
    rows: dict[str, "NodeCost"],
    graph: nir.NIRGraph,
    on_chip: set[str],
    placement: dict[str, NodePlacement],
    rates: "ChipRates",
    steps: int,
) -> None:
    """Each chip node's messages to chip consumers are received by those consumers' cores,
    shared among the consumers in proportion to their cores."""
    post: dict[str, list[str]] = defaultdict(list)
    for s, d in graph.edges:
        if s in on_chip and d in on_chip:
            post[s].append(d)
    for src, consumers in post.items():
        sender = rows[src]
        to_host = len(consumers) < sum(1 for s, _ in graph.edges if s == src)
        split = (placement[src].col_blocks or 1) > 1  # partial sums: no message to the host
        chip_messages = sender.messages - (sender.spikes if to_host and not split else 0.0)
        cores = sum(max(placement[d].cores, 1) for d in consumers)
        for d in consumers:
            rows[d].messages_in += chip_messages * max(placement[d].cores, 1) / cores
    for r in rows.values():
        if r.unit == "chip" and r.messages_in:
            r.message_energy_j += r.messages_in * rates.e_message_in
            r.core_step_s += r.messages_in * rates.t_message_in / (max(r.cores, 1) * steps)


def add_graded_bounds(r: "NodeCost", rates: "ChipRates", steps: int) -> None:
    """The upper bound of a graded sender: b-bit spikes as b binary messages each."""
    if r.unit != "chip" or r.spike_bits <= r.spikes or not r.spikes:
        return
    extra = r.spike_bits / r.spikes - 1.0  # bits per spike beyond the first
    r.graded_extra_energy_j = extra * (r.messages * rates.e_message + r.hops * rates.e_hop)
    r.graded_extra_core_step_s = extra * r.messages * rates.t_message / (max(r.cores, 1) * steps)


def add_host_link(
    rows: dict[str, "NodeCost"],
    graph: nir.NIRGraph,
    on_chip: set[str],
    link: LinkRates,
    steps: int = 1,
    width: str = "word",
    moved_bits: dict[str, int] | None = None,
) -> None:
    """Each edge between a chip node and a host op carries its source's output once per
    token: one transfer, charged to the receiver, each value ``bytes_per_value`` bytes
    (``width="word"``) or at the width the artifact bounds it to (``"bytes"``: the narrowest
    whole-byte integer, ``"bits"``: bit-packed; :mod:`stac.sim.link_width`). ``moved_bits``:
    the width of the values a host op moved onto the chip takes and sends, from its
    ``[capabilities]`` row (``value_bits``)."""
    if width not in WIDTHS:
        raise StacError(f"link width must be one of {', '.join(WIDTHS)}, got {width!r}")
    for s, d in graph.edges:
        if (s in on_chip) == (d in on_chip):
            continue
        try:
            values = math.prod(int(x) for x in output_shape(graph.nodes[s]))
        except (StacError, AttributeError, TypeError, ValueError) as exc:
            raise StacError(
                f"cost model: cannot size the chip-host transfer {s} -> {d} "
                f"(output shape of {s}: {exc})"
            ) from None
        r = rows[d]
        bits = None
        chip_end = d if d in on_chip else s
        if width != "word" and chip_end in (moved_bits or {}):
            bits = (moved_bits or {})[chip_end]
        elif width != "word":
            bits, why = value_bits(graph, s, d, d in on_chip, steps)
            if bits is None:
                r.notes.append(
                    f"host link {s} -> {d}: {why}; priced at {link.bytes_per_value} bytes per value"
                )
        size = value_bytes(values, bits, width, link.bytes_per_value)
        r.link_bytes += size
        r.link_values += values
        r.link_transfers += 1
        r.link_fixed_s += link.latency_s
        r.link_energy_j += size * link.e_byte
        seconds = link.latency_s + size / link.bytes_per_s
        r.link_latency_s += seconds
        r.latency_s += seconds


def pipeline(rows: list["NodeCost"]) -> dict[str, Any]:
    """Throughput of a stream of independent items: each chip stage (its own cores), the host
    (one processor for every host op) and the host link (one link) work on different items
    at once, so one item leaves per slowest resource's time. ``pipeline_other_*``: the
    slowest resource but the link (what a coalesced link leaves, :func:`batch_figures`)."""
    busy: dict[str, float] = defaultdict(float)
    for r in rows:
        key = f"chip stage {r.stage}" if r.unit == "chip" else "host"
        busy[key] += r.latency_s - r.link_latency_s
        if r.link_latency_s:
            busy["host link"] += r.link_latency_s
    if not busy or max(busy.values()) <= 0:
        return {
            "pipeline_items_per_s": 0.0,
            "pipeline_stage_s": 0.0,
            "pipeline_bottleneck": "-",
            "pipeline_other_s": 0.0,
            "pipeline_other": "-",
        }
    name = max(busy, key=lambda k: busy[k])
    others = {k: v for k, v in busy.items() if k != "host link"}
    other = max(others, key=lambda k: others[k]) if others else "-"
    return {
        "pipeline_items_per_s": 1.0 / busy[name],
        "pipeline_stage_s": busy[name],
        "pipeline_bottleneck": name,
        "pipeline_other_s": others.get(other, 0.0),
        "pipeline_other": other,
    }


#: Batches ``stac report`` prices (conversations with a token in flight at once).
BATCHES = (1, 2, 4, 8, 16, 32, 64)


def batch_figures(
    total: dict[str, Any], static_w: float, batch: int, group: int = 1
) -> dict[str, Any]:
    """Per-token figures with ``batch`` conversations' tokens in flight at once, run as
    ``batch / group`` groups of ``group`` conversations in lockstep.

    Each conversation's next token needs its last, so a conversation has one token in flight.
    A group runs as one call of the runtime does: each chip stage, then the host, takes the
    group's g tokens one after another (g times a token's time), and each chip-host boundary
    is one transfer of the g tokens' values (the link's fixed latency ``link_fixed_s`` once,
    its bytes g times). So a group's latency is L_g = g (L - link) + fixed + g bytes_s, and the
    link is busy fixed / g + bytes_s per token. The B / g groups fill the pipeline
    (:func:`pipeline`) up to its slowest resource: tokens/s = min(B / L_g, 1 / max(slowest
    other resource, link per token)). g = 1 is one token per transfer (the plain pipeline).
    The chips draw their static power whatever the batch, so static energy per token = static
    power / tokens/s; the dynamic, host and link energy of a token do not depend on the batch
    (the link is priced per byte). A conversation waits for its turn at the slowest resource,
    so its time per token is B / tokens/s (at least L_g)."""
    if batch < 1:
        raise StacError(f"batch must be a positive integer, got {batch}")
    if group < 1 or batch % group:
        raise StacError(
            f"group must be a positive integer dividing the batch ({batch}), got {group}"
        )
    latency = total["latency_s"]
    if latency <= 0:
        return {"batch": batch, "tokens_per_s": 0.0, "energy_j": 0.0, "latency_s": 0.0}
    stage = total.get("pipeline_stage_s") or latency
    link = total.get("link_latency_s", 0.0)
    fixed = total.get("link_fixed_s", 0.0)
    other = total.get("pipeline_other_s", stage)
    link_per_token = fixed / group + (link - fixed)
    slowest = max(other, link_per_token) if "pipeline_other_s" in total else stage
    group_latency = group * (latency - link) + fixed + group * (link - fixed)
    tokens_per_s = min(batch / group_latency, 1.0 / slowest)
    static = static_w / tokens_per_s
    per_token = total["energy_j"] - total["chip_static_energy_j"] + static
    if "pipeline_other_s" in total:
        bottleneck = "host link" if link_per_token >= other else total.get("pipeline_other", "-")
    else:
        bottleneck = total.get("pipeline_bottleneck", "-")
    return {
        "batch": batch,
        "group": group,
        "tokens_per_s": tokens_per_s,
        "energy_j": per_token,
        "chip_static_energy_j": static,
        "latency_s": max(group_latency, batch / tokens_per_s),
        "group_latency_s": group_latency,
        "bound": "pipeline" if batch / group_latency >= 1.0 / slowest else "latency",
        "bottleneck": bottleneck,
    }


def batch_sweep(total: dict[str, Any], static_w: float, group: int = 1) -> list[dict[str, Any]]:
    """:func:`batch_figures` with 1, 2, 4, .. 64 groups of ``group`` in flight
    (:data:`BATCHES` times ``group`` conversations)."""
    return [batch_figures(total, static_w, b * group, group) for b in BATCHES]


__all__ = [
    "BATCHES",
    "LinkRates",
    "batch_figures",
    "batch_sweep",
    "add_graded_bounds",
    "add_host_link",
    "add_receive",
    "barrier_s",
    "barrier_table",
    "mapped_tiles",
    "pipeline",
]
