"""Pareto fronts of a sweep, per target: perplexity ratio (lower), energy per token (lower),
tokens per second (higher); a markdown table, a plot and the chosen point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stac.errors import StacError

#: The objectives, as (record field, sense): -1 lower is better, +1 higher is better.
OBJECTIVES = (("ratio", -1), ("energy_j", -1), ("tokens_per_s", 1))


def rows(records: list[dict[str, Any]], target: str) -> list[dict[str, Any]]:
    """One row per successful point priced on ``target``: the label and the three objectives."""
    out = []
    for r in records:
        if r.get("status") != "ok":
            continue
        t = r.get("targets", {}).get(target)
        if t is None or "error" in t:
            continue
        out.append(
            {
                "key": r["key"],
                "label": r["label"],
                "ratio": float(r["fidelity"]["perplexity_ratio"]),
                "top1": float(r["fidelity"]["top1_agreement"]),
                "energy_j": float(t["energy_j"]),
                "latency_s": float(t["latency_s"]),
                "tokens_per_s": float(t["tokens_per_s"]),
            }
        )
    return out


def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in at least one."""
    no_worse = all(sense * (a[f] - b[f]) >= 0 for f, sense in OBJECTIVES)
    better = any(sense * (a[f] - b[f]) > 0 for f, sense in OBJECTIVES)
    return no_worse and better


def front(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows no other row dominates, by energy per token (ties: by ratio)."""
    keep = [a for a in items if not any(dominates(b, a) for b in items if b is not a)]
    return sorted(keep, key=lambda r: (r["energy_j"], r["ratio"]))


def choose(records: list[dict[str, Any]], target: str, max_ratio: float) -> dict[str, Any]:
    """The criterion of ``--write-best``: on ``target``, the point with the lowest energy per
    token among those whose perplexity ratio is at most ``max_ratio`` (ties: the higher
    tokens/s, then the lower ratio)."""
    ok = [r for r in rows(records, target) if r["ratio"] <= max_ratio]
    if not ok:
        raise StacError(
            f"no point priced on {target} has a perplexity ratio <= {max_ratio:g}; nothing to write"
        )
    best = min(ok, key=lambda r: (r["energy_j"], -r["tokens_per_s"], r["ratio"]))
    return next(r for r in records if r["key"] == best["key"])


def markdown(records: list[dict[str, Any]], targets: list[str]) -> str:
    """Per target, the Pareto front; then every point, failures with their error."""
    lines = ["# Design-space exploration", ""]
    for target in targets:
        items = rows(records, target)
        lines += [
            f"## Pareto front on {target} ({len(front(items))} of {len(items)} points)",
            "",
            "| point | ppl ratio | top-1 | energy/token (mJ) | latency/token (ms) | tokens/s |",
            "|---|---|---|---|---|---|",
        ]
        for r in front(items):
            lines.append(
                f"| {r['label']} | {r['ratio']:.4f} | {r['top1'] * 100:.1f} % | "
                f"{r['energy_j'] * 1e3:.4g} | {r['latency_s'] * 1e3:.4g} | "
                f"{r['tokens_per_s']:.4g} |"
            )
        lines.append("")
    lines += ["## Every point", "", "| point | status | ppl ratio | note |", "|---|---|---|---|"]
    for r in records:
        ratio = r.get("fidelity", {}).get("perplexity_ratio")
        note = r.get("error") or r.get("note") or ""
        lines.append(
            f"| {r['label']} | {r['status']} | "
            f"{'' if ratio is None else f'{ratio:.4f}'} | {note.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def plot(records: list[dict[str, Any]], targets: list[str], path: Path) -> None:
    """Energy per token against perplexity ratio, one colour per target, the front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, target in enumerate(targets):
        items = rows(records, target)
        if not items:
            continue
        colour = f"C{i}"
        ax.scatter(
            [r["ratio"] for r in items],
            [r["energy_j"] * 1e3 for r in items],
            color=colour,
            alpha=0.4,
            label=f"{target}: every point",
        )
        best = sorted(front(items), key=lambda r: r["ratio"])
        ax.plot(
            [r["ratio"] for r in best],
            [r["energy_j"] * 1e3 for r in best],
            "o-",
            color=colour,
            label=f"{target}: Pareto front",
        )
        for r in best:
            ax.annotate(r["label"], (r["ratio"], r["energy_j"] * 1e3), fontsize=7)
    ax.set_xlabel("perplexity ratio (SNN / float), held-out text")
    ax.set_ylabel("energy per token (mJ)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = ["OBJECTIVES", "choose", "dominates", "front", "markdown", "plot", "rows"]
