"""``stac import-nir``'s report as text: one line for the terminal, and Markdown."""

from __future__ import annotations

from typing import Any

from stac.reporting.fit import format_legality


def to_markdown(report: dict[str, Any]) -> str:
    t = report["total"]
    lines = [
        f"# stac report: {report['model']} on {report['target']}",
        "",
        f"- T = {report['timesteps']} steps{_dt(report)}; {report['input']}",
        f"- {report['discretisation']}",
        f"- spikes {t['spikes']:.0f}, synops {t['synops']:.0f}, neuron updates "
        f"{t['neuron_updates']:.0f} ({report['units']})",
        f"- energy {t['energy_j']:.4g} J (chip dynamic {t['chip_dynamic_energy_j']:.4g}, "
        f"static {t['chip_static_energy_j']:.4g}, host {t['host_energy_j']:.4g}); "
        f"latency {t['latency_s']:.4g} s; {t['chips']} chip(s), {t['cores']} cores",
    ]
    if str(report.get("model", "")).startswith("netx:"):
        lines.append(
            "- weights and neuron parameters are the netx file's own integers, carried "
            "unchanged by the quantise pass (the run is bit-accurate to lava-dl's netx)"
        )
    elif report.get("quantisation"):
        lines.append(
            f"- weights and neuron parameters of the chip nodes are quantised to "
            f"{report['quantisation']['profile']}'s widths before the run (per-layer "
            "errors under `quantisation` in report.json): the counts and the recorded "
            "spikes are those of the quantised network"
        )
    if report.get("legality"):
        lines += ["", "```", *format_legality(report["legality"]), "```"]
    lines += [
        "",
        "## Assumptions",
        "",
    ] + [f"- {a}" for a in report["estimate"]["assumptions"]]
    return "\n".join(lines) + "\n"


def format_import(report: dict[str, Any]) -> str:
    t = report["total"]
    clock = "Loihi steps" if report.get("dt_s") is None else f"dt={report['dt_s']} s"
    return (
        f"{report['model']} on {report['target']}: T={report['timesteps']} "
        f"({clock}), spikes {t['spikes']:.0f}, synops {t['synops']:.0f}, "
        f"energy {t['energy_j']:.4g} J per sample, latency {t['latency_s']:.4g} s, "
        f"{t['cores']} cores"
    )


__all__ = ["format_import", "to_markdown"]


def _dt(report: dict[str, Any]) -> str:
    """ " of dt = ... s" for a NIR run; empty for a netx run (one Loihi step per timestep)."""
    return "" if report.get("dt_s") is None else f" of dt = {report['dt_s']} s"
