"""Estimated energy of metered runs, on the hardware profile the graph was partitioned for.

The same cost model as ``stac compile``'s report (:mod:`stac.sim.cost`), applied to the
statistics a :class:`stac.runtime.processor.Meter` summed over a turn.
"""

from __future__ import annotations

from dataclasses import dataclass

import nir

from stac.errors import StacError
from stac.ir.results import partition_of
from stac.profiles import Profile, host_profile, load_bundled
from stac.runtime.processor import Meter
from stac.sim.cost import MODEL, node_costs, summarise


@dataclass(frozen=True)
class EnergyEstimate:
    """Totals over the metered runs (not per token)."""

    tokens: int  # real tokens computed
    padded: int  # padding slots computed alongside (their work is included)
    spikes: int
    synops: int
    chip_dynamic_j: float
    chip_static_j: float
    host_j: float
    link_j: float  # values crossing the chip-host link
    latency_s: float  # the cost model's chip + host latency, not the simulator's wall time
    profile: str
    model: str = MODEL

    @property
    def energy_j(self) -> float:
        return self.chip_dynamic_j + self.chip_static_j + self.host_j + self.link_j

    def line(self) -> str:
        return (
            f"{self.tokens} tokens, {self.spikes:,} spikes, est. {self.energy_j * 1e3:.4g} mJ "
            f"(chip {self.chip_dynamic_j * 1e3:.3g} dynamic + {self.chip_static_j * 1e3:.3g} "
            f"static, host {self.host_j * 1e3:.3g}, link {self.link_j * 1e3:.3g}) on "
            f"{self.profile}, {self.model} estimate"
        )


def estimate(
    graph: nir.NIRGraph,
    meter: Meter,
    steps: int,
    profile: Profile | None = None,
    host: Profile | None = None,
) -> EnergyEstimate:
    """Energy and latency of everything ``meter`` saw, on the graph's partition profile.

    ``profile`` and ``host`` are the artifact's copies (:class:`stac.artifact.Artifact`); a
    bare graph is priced on the bundled profile its partition names (never a path).
    """
    part = partition_of(graph)
    if part is None:
        raise StacError("the graph was not partitioned for a profile; compile it with stac compile")
    work = meter.tokens + meter.padded
    if not work:
        raise StacError("nothing was run, so there is nothing to estimate")
    if profile is not None and profile.name != part.profile:
        raise StacError(
            f"the graph was partitioned for {part.profile!r}, not for profile {profile.name!r}"
        )
    chip = profile if profile is not None else load_bundled(part.profile)
    host = host if host is not None else host_profile(chip)
    rows = node_costs(graph, meter.stats, chip, host, steps, work)
    total = summarise(rows, chip, part.chips, part.cores)["total"]
    return EnergyEstimate(
        tokens=meter.tokens,
        padded=meter.padded,
        spikes=sum(s.spikes for s in meter.stats.values()),
        synops=sum(s.synops for s in meter.stats.values()),
        chip_dynamic_j=total["chip_dynamic_energy_j"] * work,
        chip_static_j=total["chip_static_energy_j"] * work,
        host_j=total["host_energy_j"] * work,
        link_j=total["link_energy_j"] * work,
        latency_s=total["latency_s"] * work,
        profile=chip.name,
    )
