"""The passes' findings as text: the fit (partition, placement) and the legality report."""

from __future__ import annotations

from typing import Any


def format_legality(report: dict[str, Any], limit: int = 12) -> list[str]:
    """Lines for a terminal or Markdown report: counts, then issues (errors first); ``report``
    is a :class:`stac.ir.results.Legality` as JSON data (``to_dict``)."""
    lines = [
        f"legality on {report['profile']}: {report['errors']} error(s), "
        f"{report['warnings']} warning(s), {report['notes']} note(s)"
    ]
    for i in report["issues"][:limit]:
        lines.append(f"  {i['level']:<7} {i['node']:<22} [{i['limit']}] {i['message']}")
    if len(report["issues"]) > limit:
        lines.append(f"  ... {len(report['issues']) - limit} more in report.json")
    return lines


def fit_lines(fit: dict[str, Any], limit: int = 12) -> list[str]:
    """Report lines for :func:`fit_report`'s data."""
    lines = []
    part, traffic = fit.get("partition") or {}, fit.get("traffic")
    if part:
        u = part.get("utilisation", {})
        lines.append(
            f"fit: {part['cores']} cores on {part['chips']} {part['profile']} chip(s); "
            f"utilisation: synaptic memory {u.get('synaptic_memory', 0):.1%}, neuron "
            f"slots {u.get('neurons', 0):.1%}, cores of the chips {u.get('cores', 0):.1%}"
        )
    if traffic:
        lines.append(
            f"placement: {traffic['placed']['hops']:.4g} hop-messages and "
            f"{traffic['placed']['chip_crossings']:.4g} chip crossings per timestep "
            f"(sequential placement: {traffic['sequential']['hops']:.4g}); rate: "
            f"{traffic['rate']}"
        )
    if fit.get("legality"):
        lines += format_legality(fit["legality"], limit)
    return lines


__all__ = ["fit_lines", "format_legality"]
