"""``stac eval``'s results as text (a table) and as a PNG plot against T."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stac.eval import Fidelity


def figure(results: list[Fidelity], title: str) -> Any:
    """The plot's matplotlib figure: perplexity ratio and top-1 agreement against T.

    T is on a base-2 axis with one plain tick per measured T (no minor ticks); the ratio is on
    a linear axis unless it spans more than a factor of 10, and then on a log axis whose ticks
    are still plain numbers (1, 2, 5, 10), never powers of ten in exponent notation.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator

    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    ts = [r.timesteps for r in results]
    ratios = [r.perplexity_ratio for r in results]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    a.plot(ts, ratios, "o-")
    a.axhline(1.0, color="grey", lw=0.8)
    a.set(xlabel="T (timesteps per token)", ylabel="perplexity ratio SNN / float")
    if min(ratios) > 0 and max(ratios) / min(ratios) > 10:
        a.set_yscale("log")
        a.yaxis.set_minor_formatter(NullFormatter())
    a.yaxis.set_major_formatter(plain)
    b.plot(ts, [100 * r.top1_agreement for r in results], "o-", color="C1")
    b.set(xlabel="T (timesteps per token)", ylabel="top-1 agreement (%)", ylim=(0, 100))
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(ts, [str(t) for t in ts])
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot(results: list[Fidelity], path: Path, title: str) -> None:
    """Write :func:`figure` as a PNG."""
    import matplotlib.pyplot as plt

    fig = figure(results, title)
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def format_results(doc: dict[str, Any]) -> str:
    lines = [
        f"{doc['model']}, {doc['mode']} mode (compiled at T={doc['artifact_timesteps']}); "
        f"{doc['scored_tokens']} scored tokens in {doc['windows']} windows of {doc['window']} "
        f"from {doc['text']}",
        f"{'T':>4} {'float ppl':>10} {'SNN ppl':>10} {'ratio':>8} {'top-1 agree':>12} "
        f"{'KL':>8} {'spike rate':>11} {'bits/spike':>11}",
    ]
    for r in doc["results"]:
        lines.append(
            f"{r['timesteps']:>4} {r['float_perplexity']:>10.3f} {r['snn_perplexity']:>10.3f} "
            f"{r['perplexity_ratio']:>8.4f} {r['top1_agreement']:>12.1%} {r['mean_kl']:>8.4f} "
            f"{r['spike_rate']:>11.4f} {r['bits_per_spike']:>11.2f}"
        )
    return "\n".join(lines)


__all__ = ["format_results", "plot"]
