"""Helpers the passes share: copying nodes with changes, where each node runs, issues.

An *issue* (:class:`stac.ir.results.Issue`) is one line of the legality report: a level
(``error``, ``warning`` or ``note``), the layer (node) it concerns, the profile limit it is
about (a profile field such as ``chip.axons_in_per_core``, or ``-``), and a sentence. Passes
record issues in the graph's metadata by pass (read with ``issues_of``); the legality pass
gathers them.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import nir

from stac.ir.analysis import EVENT_ROUTING_TYPES, SPIKING_TYPES, event_nodes
from stac.ir.graph import make_graph, predecessors, topo_order
from stac.ir.nodes import Readout, StacNode
from stac.ir.results import Issue, issues_of
from stac.profiles import Profile

#: Nodes whose parameters are synaptic weights (a matrix or a kernel).
WEIGHTED_TYPES: tuple[type, ...] = (nir.Linear, nir.Affine, nir.Conv1d, nir.Conv2d)
#: Neuron-like nodes that hold state but never spike (leaky integrators).
INTEGRATOR_TYPES: tuple[type, ...] = (nir.LI, nir.CubaLI, nir.I)


def with_metadata(node: Any, **extra: Any) -> Any:
    """A copy of ``node`` whose metadata has ``extra`` added (the input is left untouched)."""
    return replace_fields(node, metadata={**(node.metadata or {}), **extra})


def replace_fields(node: Any, **fields: Any) -> Any:
    """A copy of ``node`` with ``fields`` replaced; arrays not replaced stay shared."""
    if isinstance(node, StacNode):
        return dataclasses.replace(node, **fields)
    clone = copy.copy(node)
    for key, value in fields.items():
        setattr(clone, key, value)
    return clone


def is_neuron(node: Any) -> bool:
    """Spiking neurons (any type in ``SPIKING_TYPES``) and non-spiking integrators."""
    return isinstance(node, SPIKING_TYPES + INTEGRATOR_TYPES)


def moved_host_ops(graph: nir.NIRGraph, profile: Profile) -> set[str]:
    """Host ops the graph asks to run on the chip (``metadata["chip_host_ops"]``, written by
    :func:`stac.ir.passes.onchip.move_host_ops`) whose type the profile's ``[capabilities]``
    lists; any other stays on the host."""
    names = graph.metadata.get("chip_host_ops") or ()
    listed = profile.capabilities
    return {n for n in names if n in graph.nodes and type(graph.nodes[n]).__name__ in listed}


def chip_assignment(graph: nir.NIRGraph, profile: Profile) -> dict[str, bool]:
    """Whether each node runs on the chip.

    A node runs on the chip when the profile's ``[ops]`` table says so and, for a synaptic or
    routing node, when every input is spikes (a weight matrix driven by a float value is a
    dense matmul, which stays on the host); a host op moved by request
    (:func:`moved_host_ops`) runs there too.
    """
    pre = predecessors(graph)
    events = event_nodes(graph)
    moved = moved_host_ops(graph, profile)
    out = {}
    for name, node in graph.nodes.items():
        on_chip = profile.runs_on_chip(node) or name in moved
        if on_chip and isinstance(node, WEIGHTED_TYPES + EVENT_ROUTING_TYPES):
            on_chip = bool(pre[name]) and all(p in events for p in pre[name])
        out[name] = on_chip
    return readouts_follow_their_maps(graph, out, pre)


def readouts_follow_their_maps(
    graph: nir.NIRGraph, on_chip: dict[str, bool], pre: dict[str, list[str]]
) -> dict[str, bool]:
    """``on_chip`` with every Readout on the host whose map is: a readout is the send rule of
    its map's compartments, so no value goes host -> chip -> host."""
    for name, node in graph.nodes.items():
        if isinstance(node, Readout):
            on_chip[name] = on_chip[name] and all(on_chip[p] for p in pre[name])
    return on_chip


def node_order(graph: nir.NIRGraph) -> list[str]:
    """Data-flow order when the graph is acyclic, else the graph's own order (recurrent NIR)."""
    try:
        return topo_order(graph)
    except ValueError:
        return list(graph.nodes)


def issue(level: str, node: str, limit: str, message: str) -> Issue:
    return Issue(level, node, limit, message)


def rebuild(
    graph: nir.NIRGraph, nodes: dict[str, Any], pass_name: str, issues: list[Issue], **metadata: Any
) -> nir.NIRGraph:
    """The pass's output graph: same edges, new nodes, the pass's metadata and issues."""
    recorded = {**issues_of(graph), pass_name: tuple(issues)}
    return make_graph(nodes, graph.edges, {**graph.metadata, **metadata, "issues": recorded})
