"""The passes, in the order they run. Each is a pure function ``graph (, profile) -> graph``."""

from __future__ import annotations

import logging
from typing import Callable

import nir

from stac.ir.capabilities import check_capabilities
from stac.ir.graph import verify
from stac.ir.passes.legality import legality, legality_report
from stac.ir.passes.partition import partition
from stac.ir.passes.place import place
from stac.ir.passes.quantise import quantise
from stac.profiles import Profile

log = logging.getLogger(__name__)

#: The pipeline, top to bottom. The verifier runs after every pass.
PIPELINE: list[tuple[str, Callable[[nir.NIRGraph, Profile], nir.NIRGraph]]] = [
    ("quantise", quantise),  # weights and neuron parameters to the profile's widths
    ("partition", partition),  # chip or host per op; split chip ops into cores
    ("place", place),  # cores onto the mesh, fewer hops x spikes
    ("legality", legality),  # every limit checked; raises when the network does not fit
]


def run_passes(
    graph: nir.NIRGraph,
    profile: Profile,
    check: Callable[[nir.NIRGraph, str], nir.NIRGraph] = verify,
) -> nir.NIRGraph:
    """Every pass of :data:`PIPELINE` in order, ``check`` (the IR verifier) on the input and
    after each pass, naming the step."""
    check_capabilities(profile)
    check(graph, "lowering")
    for name, fn in PIPELINE:
        graph = check(fn(graph, profile), name)
        log.info("pass %s done", name)
    return graph


__all__ = [
    "PIPELINE",
    "legality",
    "legality_report",
    "partition",
    "place",
    "quantise",
    "run_passes",
]
