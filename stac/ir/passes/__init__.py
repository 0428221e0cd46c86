"""The passes, in the order they run. Each is a pure function ``graph (, profile) -> graph``."""

from __future__ import annotations

import logging
from typing import Callable

import nir

from stac.ir.graph import verify
from stac.ir.passes.partition import partition
from stac.profiles import Profile

log = logging.getLogger(__name__)

#: The pipeline, top to bottom. The verifier runs after every pass.
PIPELINE: list[tuple[str, Callable[[nir.NIRGraph, Profile], nir.NIRGraph]]] = [
    ("partition", partition),
]


def run_passes(graph: nir.NIRGraph, profile: Profile) -> nir.NIRGraph:
    verify(graph, "lowering")
    for name, fn in PIPELINE:
        graph = verify(fn(graph, profile), name)
        log.info("pass %s done", name)
    return graph


__all__ = ["PIPELINE", "partition", "run_passes"]
