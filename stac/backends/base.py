"""The interface every backend implements."""

from __future__ import annotations

from typing import Any, Protocol

import nir

from stac.profiles import Profile
from stac.sim.semantics import NodeStats, RunContext


class Backend(Protocol):
    """A target's executor: ``lower`` once, then ``run`` on tokens; ``summary`` says what a
    backend that runs elsewhere did."""

    name: str

    def lower(self, graph: nir.NIRGraph, profile: Profile) -> Any:
        """Turn the (partitioned) graph into whatever this backend executes; raise
        :class:`stac.StacError` naming every node it cannot handle."""

    def run(self, lowered: Any, ctx: RunContext) -> tuple[dict[str, Any], dict[str, NodeStats]]:
        """Outputs by Output-node name, and per-node operation counts."""

    def summary(self, lowered: Any) -> dict[str, Any] | None:
        """JSON-ready data on what the backend did across its runs of ``lowered`` (for Lava:
        blocks run as processes, bit-exactness against stac's fixed-point model), which the
        compile report records under ``backend_run``; None when the backend is stac's own
        simulator, whose counts are the report itself."""
