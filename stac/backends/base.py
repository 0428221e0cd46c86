"""The interface every backend implements."""

from __future__ import annotations

from typing import Any, Protocol

import nir

from stac.profiles import Profile
from stac.sim.semantics import NodeStats, RunContext


class Backend(Protocol):
    """A target's executor: ``lower`` once, then ``run`` on tokens."""

    name: str

    def lower(self, graph: nir.NIRGraph, profile: Profile) -> Any:
        """Turn the (partitioned) graph into whatever this backend executes; raise
        :class:`stac.StacError` naming every node it cannot handle."""

    def run(self, lowered: Any, ctx: RunContext) -> tuple[dict[str, Any], dict[str, NodeStats]]:
        """Outputs by Output-node name, and per-node operation counts."""
