"""``stac compile``'s report as text: the conversion log, the per-layer table, Markdown."""

from __future__ import annotations

from typing import Any

import nir

from stac.ir.analysis import op_census, spike_driven_share
from stac.reporting.fit import fit_lines
from stac.reporting.lava import lava_run_section
from stac.reporting.tables import fmt
from stac.reporting.targets import pricing_lines


def conversion_log(graph: nir.NIRGraph, context: int, header: list[str]) -> str:
    """What runs spike-driven and what stays on the host, with each op's MAC share."""
    rows = op_census(graph, context)
    total = sum(r.macs for r in rows) or 1
    lines = list(header)
    lines += [
        "",
        f"Multiply-accumulates per token (attention at a context of {context} tokens):",
        f"{'node':<26} {'type':<20} {'runs as':<14} {'MACs/token':>14} {'share':>8}",
    ]
    host_types: dict[str, int] = {}
    for r in rows:
        if r.type in ("Input", "Output"):
            continue
        if r.spike_driven:
            how = "spike-driven"
        elif r.type == "SignedIF":
            how = "spiking neuron"
        elif r.type == "Readout":
            how = "chip readout"
        else:
            how = "host (float)"
            host_types[r.type] = host_types.get(r.type, 0) + r.macs
        lines.append(f"{r.node:<26} {r.type:<20} {how:<14} {r.macs:>14,} {r.macs / total:>8.2%}")
    share = spike_driven_share(rows)
    lines += [
        "",
        f"spike-driven share of MACs: {share:.2%}",
        "non-spiking (host) ops and their share of MACs:",
    ]
    lines += [f"  {t:<20} {m / total:>8.2%}" for t, m in sorted(host_types.items())]
    return "\n".join(lines) + "\n"


def encoder_lines(table: dict[str, dict[str, Any]]) -> list[str]:
    spikes = [(v["spike_rate"], v["bits_per_spike"]) for v in table.values()]
    mean_bits = sum(r * b for r, b in spikes) / max(sum(r for r, _ in spikes), 1e-30)
    lines = [
        "",
        "Spiking encoders (spike rate measured on the prompt):",
        f"{'encoder':<26} {'coding':<8} {'drive':<6} {'K':>8} {'bits/spike':>10} "
        f"{'spike rate':>11}",
    ]
    lines += [
        f"{n:<26} {v['coding']:<8} {v['drive']:<6} {v['max_payload']:>8} "
        f"{v['bits_per_spike']:>10} {v['spike_rate']:>11.4f}"
        for n, v in table.items()
    ]
    lines.append(f"mean bits per emitted spike: {mean_bits:.2f}")
    return lines


def format_table(report: dict[str, Any]) -> str:
    """A fixed-width per-layer table and a summary, per token."""
    cols = ("layer", "spikes", "synops", "neuron upd", "chip uJ", "host uJ", "latency us", "cores")
    lines = [
        f"stac report: {report['model']} on {report['target']} "
        f"(T={report['timesteps']}, {report['prompt_tokens']} prompt tokens), per token",
        "  ".join(f"{c:>11}" for c in cols),
    ]

    def row(name: str, d: dict[str, Any], chip_key: str) -> str:
        vals = (
            d["spikes"],
            d["synops"],
            d["neuron_updates"],
            d[chip_key] * 1e6,
            d["host_energy_j"] * 1e6,
            d["latency_s"] * 1e6,
            d["cores"],
        )
        return "  ".join([f"{name:>11}"] + [f"{fmt(v):>11}" for v in vals])

    for name, d in report["layers"].items():
        lines.append(row(name, d, "chip_energy_j"))
    t = report["total"]
    lines.append(row("total", t, "chip_dynamic_energy_j"))
    lines += [
        "",
        f"energy per token: {t['energy_j'] * 1e3:.4g} mJ = chip dynamic "
        f"{t['chip_dynamic_energy_j'] * 1e3:.4g} + chip static "
        f"{t['chip_static_energy_j'] * 1e3:.4g}"
        f" + host {t['host_energy_j'] * 1e3:.4g}"
        f" + host link {t.get('link_energy_j', 0.0) * 1e3:.4g} mJ",
        f"latency per token: {t['latency_s'] * 1e3:.4g} ms ({t['tokens_per_s']:.4g} tokens/s); "
        f"{t['chips']} chip(s), {t['cores']} cores; spike rate {t['spike_rate']:.3f} "
        "per neuron-step",
        f"spike-driven share of MACs: {report['spike_driven_share']:.2%}; "
        f"fidelity on the prompt: top-1 agreement with the float model "
        f"{report['prompt_top1_agreement']:.1%}",
        f"estimate ({report['estimate']['model']}): "
        + "; ".join(report["estimate"]["assumptions"][:2]),
    ]
    if "pipeline_items_per_s" in t:  # reports written before stac-stage-sync-v3 lack these
        lines[-1:-1] = pricing_lines(t)
    if report.get("fit"):  # partition, placement and legality of the passes
        lines += [""] + fit_lines(report["fit"])
    return "\n".join(lines)


def to_markdown(report: dict[str, Any]) -> str:
    table = format_table(report).splitlines()
    notes = report.get("notes") or []
    return (
        "# stac report\n\n```\n"
        + "\n".join(table)
        + "\n```\n\n## Assumptions\n\n"
        + "\n".join(f"- {a}" for a in report["estimate"]["assumptions"])
        + "\n"
        + ("\n## Notes\n\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else "")
        + lava_run_section(report.get("backend_run"))
    )


__all__ = ["conversion_log", "encoder_lines", "format_table", "to_markdown"]
