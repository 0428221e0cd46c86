"""``stac report`` as text: a fixed-width table for the terminal and Markdown."""

from __future__ import annotations

from typing import Any

from stac.reporting.tables import fmt, md_table, text_table

PLOTS = {
    "energy_breakdown.png": "Energy per token by part (log scale)",
    "spike_rate.png": "Spike rate per layer",
    "core_utilisation.png": "Core utilisation per layer",
}
_HEAD = (
    "target",
    "runs",
    "energy mJ",
    "chip dyn mJ",
    "chip static mJ",
    "host mJ",
    "host link mJ",
    "latency ms",
    "tokens/s",
    "items/s pipelined",
    "chips",
    "cores",
    "synops/MACs",
    "spike rate",
)
_LAYER_HEAD = (
    "layer",
    "spikes",
    "synops",
    "messages",
    "chip dyn uJ",
    "chip static uJ",
    "host uJ",
    "latency us",
    "cores",
    "spike rate",
    "memory",
    "busy",
)


def _mj(x: float | None) -> str:
    return "-" if x is None else fmt(x * 1e3)


def summary_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per target, per token; a target that could not be estimated says why."""
    rows: list[tuple[str, ...]] = []
    for t in report["targets"]:
        if "error" in t:
            rows.append((t["target"], t["kind"], f"not estimated: {t['error']}"))
            continue
        s = t["total"]
        if t["kind"] == "dense":
            rows.append(
                (
                    t["target"],
                    f"float {s['precision']} ({s['bound']}-bound)",
                    _mj(s["energy_j"]),
                    "-",
                    "-",
                    "-",
                    "-",
                    fmt(s["latency_s"] * 1e3),
                    fmt(s["tokens_per_s"]),
                    "-",
                    "1",
                    "-",
                    fmt(s["macs"]),
                    "-",
                )
            )
        else:
            rows.append(
                (
                    t["target"],
                    "SNN + host",
                    _mj(s["energy_j"]),
                    _mj(s["chip_dynamic_energy_j"]),
                    _mj(s["chip_static_energy_j"]),
                    _mj(s["host_energy_j"]),
                    _mj(s["link_energy_j"]),
                    fmt(s["latency_s"] * 1e3),
                    fmt(s["tokens_per_s"]),
                    fmt(s["pipeline_items_per_s"]),
                    str(s["chips"]),
                    str(s["cores"]),
                    fmt(s["synops"]),
                    f"{s['spike_rate']:.3f}",
                )
            )
    return rows


def layer_rows(target: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name, d in target["layers"].items():
        rows.append(
            (
                name,
                fmt(d["spikes"]),
                fmt(d["synops"]),
                fmt(d["messages"]),
                fmt(d["chip_energy_j"] * 1e6),
                fmt(d["chip_static_energy_j"] * 1e6),
                fmt(d["host_energy_j"] * 1e6),
                fmt(d["latency_s"] * 1e6),
                str(d["cores"]),
                f"{d['spike_rate']:.3f}",
                f"{d['memory_utilisation']:.0%}",
                f"{d['busy_fraction']:.0%}",
            )
        )
    return rows


def pricing_lines(total: dict[str, Any]) -> list[str]:
    """The pricing rows beyond the per-token figures: host link, graded bounds, pipeline."""
    return [
        f"host link: {fmt(total['link_bytes'])} bytes per token across the chip-host boundary, "
        f"{fmt(total['link_energy_j'] * 1e6)} uJ, {fmt(total['link_latency_s'] * 1e3)} ms",
        f"graded spikes, upper bound (a b-bit spike as b binary messages): "
        f"{fmt(total['graded_upper_energy_j'] * 1e3)} mJ and "
        f"{fmt(total['graded_upper_latency_s'] * 1e3)} ms per token (lower bound: the figures "
        "above)",
        f"pipelined stream of independent items: {fmt(total['pipeline_items_per_s'])} items/s "
        f"(slowest: {total['pipeline_bottleneck']}, {fmt(total['pipeline_stage_s'] * 1e3)} ms"
        f"); one item alone: {fmt(total['tokens_per_s'])} items/s",
    ]


def _settings(report: dict[str, Any]) -> str:
    return (
        f"{report['model']}, T = {report['timesteps']}, mode {report['mode']}; "
        f"{report['prompt_tokens']} prompt tokens (figures per token, averaged over them; "
        f"attention at a context of {report['prompt_tokens']})"
    )


def format_summary(report: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"stac report: {_settings(report)}",
            text_table(_HEAD, summary_rows(report)),
            f"estimates: {report['estimate']['chip']['model']} (neuromorphic targets), "
            f"{report['estimate']['dense']['model']} (float model on {report['baseline']} and "
            "other dense targets); see report.md for the assumptions",
        ]
    )


def to_markdown(report: dict[str, Any]) -> str:
    est = report["estimate"]
    out = [
        f"# stac report: {report['model']}",
        "",
        _settings(report) + ".",
        "",
        f"Prompt: {report['prompt']!r}",
        "",
        "## Per token",
        "",
        md_table(_HEAD, summary_rows(report)),
        "",
        f"The row for {report['baseline']} is the float model (not the SNN) on that profile, "
        "the comparison row. synops/MACs: synaptic operations for SNN rows, multiply-"
        "accumulates for float rows.",
        "",
    ]
    for t in report["targets"]:
        if t["kind"] != "neuromorphic" or "error" in t:
            continue
        out += [f"## {t['target']}: per layer", "", md_table(_LAYER_HEAD, layer_rows(t)), ""]
        out += [f"- {line}" for line in pricing_lines(t["total"])]
        out += [f"- {n}" for n in t["notes"]] + ([""] if t["notes"] else [])
    out += ["## Plots", ""] + [f"![{title}]({name})" for name, title in PLOTS.items()] + [""]
    for key, title in (("chip", "neuromorphic targets"), ("dense", "float model")):
        out += [f"## Estimate for {title}: {est[key]['model']}", ""]
        out += [f"- {a}" for a in est[key]["assumptions"]] + [""]
    return "\n".join(out)


__all__ = ["PLOTS", "format_summary", "layer_rows", "pricing_lines", "summary_rows", "to_markdown"]
