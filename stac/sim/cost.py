"""The cost model: simulator counts + a hardware profile -> energy and latency per token.

Model ("stac-layer-sync-v1"), an estimate, not a measurement:
- chip energy per node = synops * E_synop + neuron updates * E_update + spikes * E_spike_out;
- chip latency per node = (synops * t_synop + updates * t_update + spikes * t_spike_out) /
  cores, plus T global barriers per encoder stage; stages run one after another (layer-
  synchronous, no pipelining across layers or tokens);
- host ops cost (MACs * E_mac + other flops * E_flop) and (2 * MACs + flops) / throughput on
  the host profile, also in sequence;
- static energy = static power per chip * chips * latency.
Mesh traffic and placement are not modelled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import nir

from stac.ir.nodes import SignedIF
from stac.profiles import Profile
from stac.sim.semantics import NodeStats

MODEL = "stac-layer-sync-v1"
ASSUMPTIONS = [
    "estimate from operation counts, not a measurement",
    "per-operation energies and latencies are the profile's (for Loihi 2: Loihi 1 figures "
    "calibrated by SANA-FE, since Loihi 2's are unpublished)",
    "layer-synchronous schedule: chip stages and host ops run one after another per token",
    "work of a chip node is spread evenly over its cores",
    "mesh traffic, placement and fan-in/fan-out limits are not modelled",
    "host energy counts arithmetic only (Horowitz 45 nm), a lower bound",
]


@dataclass
class NodeCost:
    """Per-token figures for one node."""

    node: str
    type: str
    unit: str  # "chip" or "host"
    cores: int
    spikes: float
    synops: float
    neuron_updates: float
    host_macs: float
    host_flops: float
    chip_energy_j: float
    host_energy_j: float
    latency_s: float


def node_costs(
    graph: nir.NIRGraph, stats: dict[str, NodeStats], chip: Profile, host: Profile,
    steps: int, tokens: int,
) -> list[NodeCost]:
    e, t = chip.values["energy_pj"], chip.values["latency_ns"]
    h = host.values["host"]
    rows = []
    for name, node in graph.nodes.items():
        s = stats[name]
        placement = node.metadata.get("placement", {"unit": "host"})
        cores = int(placement.get("cores", 0))
        per = 1.0 / tokens
        syn, upd, spk = s.synops * per, s.neuron_updates * per, s.spikes * per
        macs, flops = (s.host_macs + s.dense_macs) * per, s.host_flops * per
        # Host work can belong to a chip node too (an encoder's per-token gain, say).
        host_j = (macs * h["mac_energy_pj"] + flops * h["flop_energy_pj"]) * 1e-12
        lat = (2 * macs + flops) / (h["throughput_gflops"] * 1e9)
        chip_j = 0.0
        if placement["unit"] == "chip":
            chip_j = (syn * e["synop"] + upd * e["neuron_update"] + spk * e["spike_out"]) * 1e-12
            chip_ns = (syn * t["synop"] + upd * t["neuron_update"] + spk * t["spike_out"]) / cores
            if isinstance(node, SignedIF):
                chip_ns += steps * t["barrier"]
            lat += chip_ns * 1e-9
        rows.append(NodeCost(name, type(node).__name__, placement["unit"], cores, spk, syn, upd,
                             macs, flops, chip_j, host_j, lat))
    return rows


def layer_of(node: str) -> str:
    """Group key for the per-layer table: ``layerN``, ``embed`` or ``head``."""
    head = node.split("_")[0]
    if head.startswith("layer"):
        return head
    return "embed" if node.startswith(("embed", "input")) else "head"


def summarise(
    rows: list[NodeCost], chip: Profile, chips: int, cores: int
) -> dict[str, Any]:
    """Totals per token, and the same figures per layer."""
    keys = ("spikes", "synops", "neuron_updates", "host_macs", "host_flops",
            "chip_energy_j", "host_energy_j", "latency_s")
    layers: dict[str, dict[str, float]] = {}
    for r in rows:
        agg = layers.setdefault(layer_of(r.node), {k: 0.0 for k in keys} | {"cores": 0})
        for k in keys:
            agg[k] += getattr(r, k)
        agg["cores"] += r.cores
    total = {k: sum(getattr(r, k) for r in rows) for k in keys}
    static_j = chip.get("chip", "static_power_w") * chips * total["latency_s"]
    updates = sum(r.neuron_updates for r in rows if r.type == "SignedIF")
    total.update(
        chip_dynamic_energy_j=total.pop("chip_energy_j"),
        chip_static_energy_j=static_j,
        tokens_per_s=1.0 / total["latency_s"] if total["latency_s"] else 0.0,
        chips=chips,
        cores=cores,
        spike_rate=(total["spikes"] / updates) if updates else 0.0,
    )
    total["energy_j"] = (
        total["chip_dynamic_energy_j"] + total["chip_static_energy_j"] + total["host_energy_j"]
    )
    return {"total": total, "layers": layers, "nodes": [asdict(r) for r in rows]}
