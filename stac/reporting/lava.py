"""The "Lava run" section of a compile report: what ``LavaBackend.summary`` recorded."""

from __future__ import annotations

from typing import Any


def lava_run_lines(run: dict[str, Any]) -> list[str]:
    """Markdown lines for a Lava ``backend_run`` summary."""
    widths = (
        f"{run['over_input_bits']:,} Dense outputs beyond the {run['input_bits']}-bit "
        f"input and {run['over_state_bits']:,} readouts beyond the {run['state_bits']}-bit "
        "state (Lava's Python models carry them in 32 bits; a chip would not)"
    )
    return [
        f"- {run['blocks_run']} blocks ran as Lava processes ({run['run_config']}), "
        f"{run['processes']} processes in all, {run['lava_seconds']:.1f} s in Lava against "
        f"{run['fixed_seconds']:.1f} s in stac's fixed-point model of the same blocks",
        f"- bit for bit equal to stac's fixed-point model in every encoder potential, payload "
        f"and readout: {'yes' if run['bit_exact'] else 'NO'}",
        f"- largest relative RMS difference of a map's output from the float reference "
        f"semantics: {run['max_rel_rms_vs_float']:.3g} (the drive's integer grid)",
        f"- widths: {widths}; drives clipped to the potential: {run['saturated_drives']}",
        "- host ops ran in stac's reference semantics on the host; custom process models: "
        + "; ".join(run["custom_process_models"]),
    ]


def lava_run_section(run: dict[str, Any] | None) -> str:
    """The report section of a backend that ran the chip part elsewhere (Lava), or ""."""
    if not run:
        return ""
    return "\n## Lava run\n\n" + "\n".join(lava_run_lines(run)) + "\n"


__all__ = ["lava_run_lines", "lava_run_section"]
