"""The ``sim`` backend: stac's own reference simulator with the profile's cost model."""

from __future__ import annotations

from typing import Any

import nir

from stac.profiles import Profile
from stac.sim.semantics import NodeStats, RunContext
from stac.sim.simulator import Simulator


class SimBackend:
    name = "sim"

    def lower(self, graph: nir.NIRGraph, profile: Profile) -> Simulator:  # noqa: ARG002
        return Simulator(graph)

    def run(
        self, lowered: Simulator, ctx: RunContext
    ) -> tuple[dict[str, Any], dict[str, NodeStats]]:
        return lowered.run(ctx)

    def summary(self, lowered: Simulator) -> None:  # noqa: ARG002 (the Backend interface)
        """Nothing beyond the counts: the simulator is the reference the report prices."""
        return None
