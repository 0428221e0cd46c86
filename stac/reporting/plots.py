"""PNG plots of a multi-target report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)

_PARTS = (
    ("chip_dynamic_energy_j", "chip dynamic"),
    ("chip_static_energy_j", "chip static"),
    ("host_energy_j", "host"),
    ("link_energy_j", "host link"),
)


def _chip_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in report["targets"] if t["kind"] == "neuromorphic" and "error" not in t]


def energy_breakdown(report: dict[str, Any], path: Path) -> None:
    """Grouped bars per target: chip dynamic, chip static, host, host link; dense targets:
    the device."""
    targets = [t for t in report["targets"] if "error" not in t]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(targets)), 4))
    width = 0.2
    for i, (key, label) in enumerate(_PARTS):
        xs = [j + (i - 1.5) * width for j, t in enumerate(targets) if t["kind"] == "neuromorphic"]
        ys = [t["total"][key] * 1e3 for t in targets if t["kind"] == "neuromorphic"]
        ax.bar(xs, ys, width, label=label)
    dense = [
        (j, t["total"]["energy_j"] * 1e3) for j, t in enumerate(targets) if t["kind"] == "dense"
    ]
    if dense:
        ax.bar([j for j, _ in dense], [y for _, y in dense], width, label="float model (device)")
    ax.set_xticks(range(len(targets)), [t["target"] for t in targets])
    ax.set_yscale("log")
    ax.set_ylabel("mJ per token")
    ax.set_title(f"Energy per token, {report['model']}, T={report['timesteps']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def spike_rate(report: dict[str, Any], path: Path) -> None:
    """Spikes per neuron-step per layer, one line per chip (each simulates the network
    re-quantised to its own widths, so the rates can differ a little)."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for t in _chip_targets(report):
        layers = [n for n, d in t["layers"].items() if d["neuron_updates"]]
        ax.plot(
            range(len(layers)),
            [t["layers"][n]["spike_rate"] for n in layers],
            marker="o",
            label=t["target"],
        )
        ax.set_xticks(range(len(layers)), layers, rotation=90, fontsize=7)
    ax.set_ylabel("spikes per neuron-step")
    ax.set_title("Spike rate per layer")
    if _chip_targets(report):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def core_utilisation(report: dict[str, Any], path: Path) -> None:
    """Per layer and target: share of the cores' memory used, share of the time busy."""
    chip = _chip_targets(report)
    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for t in chip:
        layers = [n for n, d in t["layers"].items() if d["cores"]]
        for ax, key in zip(axes, ("memory_utilisation", "busy_fraction"), strict=False):
            ax.plot(
                range(len(layers)),
                [t["layers"][n][key] for n in layers],
                marker="o",
                label=t["target"],
            )
        axes[1].set_xticks(range(len(layers)), layers, rotation=90, fontsize=7)
    axes[0].set_ylabel("memory used")
    axes[1].set_ylabel("time busy")
    axes[0].set_title("Core utilisation per layer")
    if chip:
        axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_plots(report: dict[str, Any], directory: Path) -> None:
    energy_breakdown(report, directory / "energy_breakdown.png")
    spike_rate(report, directory / "spike_rate.png")
    core_utilisation(report, directory / "core_utilisation.png")
