"""Partition pass: split host from chip work and count the cores the chip part needs.

A node runs on the chip when the profile lists its type in ``chip_ops`` and, for a linear map,
when every input is spikes. Each chip node gets ``ceil`` of its neurons over neurons per core,
or of its synapse bytes over synaptic memory per core, whichever is larger; a linear map's
neurons are its output compartments, which hold its synapses. Fan-in and fan-out limits and
placement on the mesh are not modelled yet and the report says so.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import nir
import numpy as np

from stac.errors import StacError
from stac.ir.analysis import EVENT_ROUTING_TYPES, event_nodes
from stac.ir.graph import make_graph, output_shape, predecessors
from stac.ir.nodes import SignedIF, StacNode
from stac.profiles import Profile


def with_metadata(node: Any, **extra: Any) -> Any:
    """A copy of ``node`` whose metadata has ``extra`` added (the input is left untouched)."""
    metadata = {**node.metadata, **extra}
    if isinstance(node, StacNode):
        return dataclasses.replace(node, metadata=metadata)
    clone = copy.copy(node)
    clone.metadata = metadata
    return clone


def _chip_need(node: Any, profile: Profile) -> tuple[int, int]:
    """(neurons, synapse bytes) of one chip node."""
    if isinstance(node, SignedIF):
        return int(node.threshold.shape[0]), 0
    if not isinstance(node, (nir.Linear, nir.Affine)):  # NIR neurons, Conv2d, routing
        neurons = int(np.prod(output_shape(node))) if not isinstance(node, EVENT_ROUTING_TYPES) else 0
        weight = getattr(node, "weight", None)
        syn = 0 if weight is None else int(np.asarray(weight).size)
        return neurons, syn * int(profile.get("chip", "weight_bits")) // 8
    out_f, in_f = node.weight.shape
    return int(out_f), int(out_f) * int(in_f) * int(profile.get("chip", "weight_bits")) // 8


def partition(graph: nir.NIRGraph, profile: Profile) -> nir.NIRGraph:
    npc = profile.get("chip", "neurons_per_core")
    mem = profile.get("chip", "synaptic_memory_bytes_per_core")
    pre = predecessors(graph)
    spiking = event_nodes(graph)
    nodes: dict[str, Any] = {}
    total_cores = 0
    for name, node in graph.nodes.items():
        kind = type(node).__name__
        on_chip = kind in profile.chip_ops
        if on_chip and isinstance(node, (nir.Linear, nir.Affine, nir.Conv2d) + EVENT_ROUTING_TYPES):
            on_chip = bool(pre[name]) and all(p in spiking for p in pre[name])
        if not on_chip:
            nodes[name] = with_metadata(node, placement={"unit": "host"})
            continue
        neurons, syn_bytes = _chip_need(node, profile)
        cores = max(math.ceil(neurons / npc), math.ceil(syn_bytes / mem), 1)
        total_cores += cores
        nodes[name] = with_metadata(
            node,
            placement={"unit": "chip", "cores": cores, "neurons": neurons,
                       "synapse_bytes": syn_bytes},
        )
    chips = math.ceil(total_cores / profile.get("chip", "cores_per_chip"))
    if chips > profile.get("chip", "max_chips"):
        raise StacError(
            f"the network needs {chips} {profile.name} chips ({total_cores} cores); the profile "
            f"allows at most {int(profile.get('chip', 'max_chips'))}"
        )
    metadata = {
        **graph.metadata,
        "partition": {"profile": profile.name, "cores": total_cores, "chips": chips},
    }
    return make_graph(nodes, graph.edges, metadata)
