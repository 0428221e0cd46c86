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
    "at batch: mJ",
    "at batch: tokens/s",
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
            basis = s.get("basis", "roofline")
            rows.append(
                (
                    t["target"],
                    f"float {s['precision']} ({basis}"
                    + (f"; roofline {s['bound']}-bound" if basis == "roofline" else "")
                    + ")",
                    _mj(s["energy_j"]),
                    "-",
                    "-",
                    "-",
                    "-",
                    fmt(s["latency_s"] * 1e3),
                    fmt(s["tokens_per_s"]),
                    "-",
                    "-",
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
                    _mj(s["at_batch"]["energy_j"]) if "at_batch" in s else "-",
                    fmt(s["at_batch"]["tokens_per_s"]) if "at_batch" in s else "-",
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


_BATCH_HEAD = ("batch", "tokens/s", "energy mJ", "chip static mJ", "ms per token", "bound")


def batch_rows(total: dict[str, Any]) -> list[tuple[str, ...]]:
    """The batch sweep of one chip target: B conversations' tokens in flight at once."""
    return [
        (
            str(b["batch"]),
            fmt(b["tokens_per_s"]),
            _mj(b["energy_j"]),
            _mj(b["chip_static_energy_j"]),
            fmt(b["latency_s"] * 1e3),
            b["bound"],
        )
        for b in total.get("batches", [])
    ]


def best_batch(total: dict[str, Any]) -> dict[str, Any] | None:
    """The smallest batch of the sweep with the most tokens/s (then the least energy)."""
    sweep = total.get("batches") or []
    if not sweep:
        return None
    top = max(b["tokens_per_s"] for b in sweep)
    return min(
        (b for b in sweep if b["tokens_per_s"] >= top * (1 - 1e-9)), key=lambda b: b["batch"]
    )


def dense_lines(report: dict[str, Any]) -> list[str]:
    """Each dense row's basis: the calibrated measurement with the roofline beside it."""
    lines = []
    for t in report["targets"]:
        if t["kind"] != "dense" or "error" in t:
            continue
        s = t["total"]
        roof = (
            f"roofline {_mj(s['roofline_energy_j'])} mJ, "
            f"{fmt(s['roofline_tokens_per_s'])} tokens/s ({s['precision']}, {s['bound']}-bound)"
        )
        if s.get("basis") == "calibrated":
            lines.append(
                f"{t['target']}: baseline = published measurement scaled x"
                f"{s['calibration_scale']:.3f} by weights: {_mj(s['energy_j'])} mJ, "
                f"{fmt(s['tokens_per_s'])} tokens/s; {roof} (source: "
                f"{s['calibration_source']})"
            )
        else:
            lines.append(f"{t['target']}: {roof}; no published measurement in the profile")
    return lines


def _settings(report: dict[str, Any]) -> str:
    return (
        f"{report['model']}, T = {report['timesteps']}, mode {report['mode']}, "
        f"batch {report.get('batch', 1)}"
        + (f" in groups of {report['group']}" if report.get("group", 1) > 1 else "")
        + (
            f", link values as {report['link_width']}"
            if report.get("link_width", "word") != "word"
            else ""
        )
        + (", host ops on chip" if report.get("host_ops_on_chip") else "")
        + "; "
        f"{report['prompt_tokens']} prompt tokens (figures per token, averaged over them; "
        f"attention at a context of {report['prompt_tokens']})"
    )


def _best_lines(report: dict[str, Any]) -> list[str]:
    out = []
    for t in report["targets"]:
        if t["kind"] != "neuromorphic" or "error" in t:
            continue
        b = best_batch(t["total"])
        if b is not None:
            out.append(
                f"{t['target']}: best batch {b['batch']}: {fmt(b['tokens_per_s'])} tokens/s at "
                f"{_mj(b['energy_j'])} mJ per token; one conversation alone: "
                f"{fmt(t['total']['latency_s'] * 1e3)} ms per token"
            )
    return out


def format_summary(report: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"stac report: {_settings(report)}",
            text_table(_HEAD, summary_rows(report)),
            *dense_lines(report),
            *_best_lines(report),
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
        *[f"- {line}" for line in dense_lines(report) + _best_lines(report)],
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
        out += [f"- {line}" for line in pricing_lines(t["total"])] + [""]
        if t["total"].get("batches"):
            out += [
                f"### {t['target']}: batches (conversations with a token in flight at once)",
                "",
                md_table(_BATCH_HEAD, batch_rows(t["total"])),
                "",
            ]
        out += [f"- {n}" for n in t["notes"]] + ([""] if t["notes"] else [])
    out += ["## Plots", ""] + [f"![{title}]({name})" for name, title in PLOTS.items()] + [""]
    for key, title in (("chip", "neuromorphic targets"), ("dense", "float model")):
        out += [f"## Estimate for {title}: {est[key]['model']}", ""]
        out += [f"- {a}" for a in est[key]["assumptions"]] + [""]
    return "\n".join(out)


__all__ = [
    "PLOTS",
    "batch_rows",
    "best_batch",
    "dense_lines",
    "format_summary",
    "layer_rows",
    "pricing_lines",
    "summary_rows",
    "to_markdown",
]
