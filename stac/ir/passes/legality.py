"""Legality pass: check the placed network against every profile limit and report.

It gathers the issues the earlier passes recorded (``issues_of(graph)``), re-checks each core
of the partition against the profile's per-core limits (the partition's own arithmetic is not
trusted), and records a :class:`~stac.ir.results.Legality` (``legality_of(graph)``): counts and
every :class:`~stac.ir.results.Issue`. Errors mean the network does not fit the chip: the pass
then raises :class:`stac.StacError` with the first error and the count, so a compile stops with
one clear line; :func:`legality_report` gives the same findings without raising.
"""

from __future__ import annotations

from typing import Any

import nir

from stac.errors import StacError
from stac.ir.nodes.adex import AdEx, fixed_point_support
from stac.ir.passes.common import issue, rebuild
from stac.ir.passes.partition import BLOCK_COLUMNS, Limits
from stac.ir.results import (
    LEVELS,
    Issue,
    Legality,
    issues_of,
    legality_of,
    node_placement,
    partition_of,
    placement_of,
)
from stac.profiles import Profile

_CHECKS = (  # block column, limit attribute, profile field
    ("neurons", "neurons", "chip.neurons_per_core"),
    ("axons_in", "axons_in", "chip.axons_in_per_core"),
    ("axons_out", "axons_out", "chip.axons_out_per_core"),
)


def _core_checks(graph: nir.NIRGraph, profile: Profile) -> list[Issue]:
    lim = Limits.of(profile)
    found = []
    for name, node in graph.nodes.items():
        p = node_placement(node)
        if p is None or not p.on_chip or not p.cores or p.blocks is None:
            continue
        blocks = p.blocks
        for column, attr, field in _CHECKS:
            worst = int(blocks[:, BLOCK_COLUMNS.index(column)].max())
            if worst > getattr(lim, attr):
                found.append(
                    issue(
                        "error",
                        name,
                        field,
                        f"{name}: a core needs {worst} "
                        f"{column.replace('_', ' ')}, above {field} = "
                        f"{getattr(lim, attr)}",
                    )
                )
        worst_bytes = int(blocks[:, BLOCK_COLUMNS.index("synapse_bytes")].max())
        if 8 * worst_bytes > lim.memory_bits:
            found.append(
                issue(
                    "error",
                    name,
                    "chip.synaptic_memory_bytes_per_core",
                    f"{name}: a core needs {worst_bytes} bytes of synapses, above "
                    f"{lim.memory_bits // 8}",
                )
            )
    return found


def _no_chip_form(graph: nir.NIRGraph) -> list[Issue]:
    """Neuron types with no fixed-point form on any profile: an error naming each node, never
    a silent move to the host."""
    return [
        issue("error", name, "-", fixed_point_support(node, name))
        for name, node in graph.nodes.items()
        if isinstance(node, AdEx)
    ]


def legality_report(graph: nir.NIRGraph, profile: Profile) -> Legality:
    """Every issue of the passes plus the per-core re-check, errors first."""
    found: list[Issue] = []
    for pass_issues in issues_of(graph).values():
        found += pass_issues
    found += _core_checks(graph, profile)
    found += _no_chip_form(graph)
    found.sort(key=lambda i: LEVELS.index(i.level))
    errors, warnings, notes = (sum(i.level == lvl for i in found) for lvl in LEVELS)
    return Legality(profile.name, errors, warnings, notes, tuple(found))


def legality(graph: nir.NIRGraph, profile: Profile) -> nir.NIRGraph:
    """Record the legality report; raise StacError when the network does not fit."""
    report = legality_report(graph, profile)
    if report.errors:
        first = report.issues[0]
        more = f" (and {report.errors - 1} more error(s))" if report.errors > 1 else ""
        raise StacError(
            f"the network does not fit {profile.name}: {first.message} [{first.limit}]{more}"
        )
    return rebuild(graph, dict(graph.nodes), "legality", [], legality=report)


def fit_report(graph: nir.NIRGraph) -> dict[str, Any]:
    """The passes' findings as JSON-ready data for a compile report: partition totals and
    utilisation, placement traffic, per-layer quantisation error, the legality report."""
    part, place, legal = partition_of(graph), placement_of(graph), legality_of(graph)
    quant = graph.metadata.get("quantise", {})
    return {
        "partition": part.to_dict() if part else {},
        "traffic": place.to_dict()["traffic"] if place else None,
        "quantisation": quant.get("layers", {}),
        "legality": legal.to_dict() if legal else None,
    }


__all__ = ["Issue", "Legality", "fit_report", "legality", "legality_of", "legality_report"]
