"""Host ops onto the chip, where the profile says its neurons can compute them.

A converted transformer crosses the chip-host boundary at every host op between two chip
stages. A chip profile's ``[capabilities]`` lists the host ops (node types) its neurons can
compute, each with its source (for Loihi 2: the residual add as Lava's ``GradedVec``, RMSNorm
as ``NormVecDelay`` with ``InvSqrt``). :func:`move_host_ops` asks for exactly those nodes to
run on the chip (``metadata["chip_host_ops"]``); the partition pass then places them like any
chip neuron node (``units`` neurons per value), and they join the adjacent chip stage. An op
whose type the profile does not list stays on the host, and :func:`host_ops_left` names it.
The cost model prices a moved op with the chip's neuron-update, synapse and message figures
(:func:`stac.sim.cost.node_costs`), not with the host's arithmetic.

It is a request on the graph, not a new pass in the pipeline: ``stac report
--host-ops-on-chip`` and ``benchmarks/energy_goal.py`` make it before the passes run.
"""

from __future__ import annotations

from collections import Counter

import nir

from stac.ir.graph import make_graph
from stac.ir.passes.partition import host_nodes
from stac.profiles import Profile


def move_host_ops(graph: nir.NIRGraph, profile: Profile) -> nir.NIRGraph:
    """``graph`` asking every host op whose type ``profile.capabilities`` lists (and that is not
    kept on the host by ``metadata["host_nodes"]``) to run on the chip."""
    keep = host_nodes(graph)
    moved = sorted(
        n
        for n, node in graph.nodes.items()
        if getattr(node, "host_op", False)
        and type(node).__name__ in profile.capabilities
        and n not in keep
    )
    return make_graph(dict(graph.nodes), graph.edges, {**graph.metadata, "chip_host_ops": moved})


def host_ops_left(graph: nir.NIRGraph, on_chip: set[str]) -> dict[str, int]:
    """Host ops (stac's node types with ``host_op``) that stay on the host: count per type."""
    return dict(
        Counter(
            type(node).__name__
            for n, node in graph.nodes.items()
            if getattr(node, "host_op", False) and n not in on_chip
        )
    )


__all__ = ["host_ops_left", "move_host_ops"]
