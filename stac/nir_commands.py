"""``stac export-nir`` and ``stac import-nir``.

export-nir: a stac artifact directory, a stac IR file (``*.stac.json``) or a NIR file ->
standard NIR (one file), or with ``split`` a directory of NIR parts plus ``manifest.json``.

import-nir: any NIR file -> the same passes, backend executor and report as a converted
transformer: read (with ``dt``) -> passes for the profile -> step-by-step run on an input ->
cost model -> ``report.json``, ``report.md`` and the IR, written atomically.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from stac import __version__
from stac.errors import StacError


def load_source(source: str | Path, dt: float | None = None):
    """A graph from an artifact directory, a stac IR file or a NIR file."""
    from stac.artifact import load_artifact
    from stac.ir import IRFormatError, load
    from stac.ir.nir_io import read_nir

    path = Path(source)
    if path.is_dir():
        return load_artifact(path).graph
    if not path.is_file():
        raise StacError(f"{path} does not exist (give an artifact directory, an IR file or a "
                        ".nir file)")
    if path.suffix == ".nir":
        return read_nir(path, dt=dt or 1e-4)
    try:
        return load(path)
    except IRFormatError as exc:
        raise StacError(str(exc)) from None


def export_nir(source: str | Path, output: str | Path, split: bool = False,
               force: bool = False) -> dict[str, Any]:
    """Export; return a summary (file(s) written, nodes)."""
    from stac.ir.nir_io import export_split, write_nir

    graph = load_source(source)
    output = Path(output)
    if output.exists() and not force:
        raise StacError(f"output {output} exists; pass --force to replace it")
    if split:
        manifest = export_split(graph, output, force=True, source=str(source))
        return {"output": str(output), "parts": [p["file"] for p in manifest["parts"]],
                "host_ops": len(manifest["host_ops"])}
    names = write_nir(graph, output)
    return {"output": str(output), "nodes": len(names)}


def load_input(path: str | Path | None, shape: tuple[int, ...], steps: int | None):
    """The drive for an import-nir run and a note saying what it is."""
    if path is None:
        if steps is None:
            raise StacError("give --steps (or --input FILE.npy to take the steps from it)")
        return np.zeros((steps, 1, *shape), np.float32), (
            f"input: zeros of shape {(steps, *shape)} (no --input given); counts show the "
            "graph's response to biases only")
    path = Path(path)
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise StacError(f"input {path}: not a readable .npy array ({exc})") from None
    if x.dtype.kind not in "fiub":
        raise StacError(f"input {path}: dtype {x.dtype} is not numeric")
    if not np.all(np.isfinite(x)):
        raise StacError(f"input {path}: contains NaN or infinite values")
    return x.astype(np.float32), f"input: {path.name}, shape {x.shape}"


def import_nir(path: str | Path, target: str, dt: float, output_dir: str | Path,
               steps: int | None = None, input_path: str | Path | None = None,
               reset: str | None = None, force: bool = False) -> dict[str, Any]:
    """Import, partition, run and report; return the report."""
    from stac.artifact import check_output_dir, write_json, writing
    from stac.backends import resolve_target
    from stac.ir import save
    from stac.ir.graph import input_shape
    from stac.ir.nir_io import RESETTABLE, read_nir
    from stac.ir.results import legality_of
    from stac.pipeline import fit, is_recurrent, price, run_steps
    from stac.profiles import load_profile
    from stac.sim.cost import ASSUMPTIONS, MODEL

    import nir

    started = time.perf_counter()
    output_dir = Path(output_dir)
    profile, backend = resolve_target(target)
    host = load_profile(profile.host)
    check_output_dir(output_dir, force)
    graph = read_nir(path, dt=dt, reset=reset)
    recurrent = is_recurrent(graph)
    graph = fit(graph, profile, source=path)
    inputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise StacError(f"import-nir runs graphs with one Input node; {path} has "
                        f"{len(inputs)} ({', '.join(inputs)})")
    x, input_note = load_input(input_path, input_shape(graph.nodes[inputs[0]]), steps)
    result = run_steps(graph, x, steps)
    t = int(steps if steps is not None else x.shape[0])
    batch = int(next(iter(result.outputs.values())).shape[1]) if result.outputs else 1
    summary = price(graph, result.stats, profile, t, batch)
    spikes = sum(s.spikes for s in result.stats.values())
    spiking_updates = sum(
        s.neuron_updates for n, s in result.stats.items()
        if isinstance(graph.nodes[n], RESETTABLE))
    summary["total"]["spike_rate"] = spikes / spiking_updates if spiking_updates else 0.0
    report = {
        "schema_version": 1,
        "stac_version": __version__,
        "model": f"nir:{Path(path).name}",
        "source": str(path),
        "target": target,
        "profile": profile.name,
        "host_profile": host.name,
        "timesteps": t,
        "dt_s": dt,
        "batch": batch,
        "recurrent": recurrent,
        "input": input_note,
        "discretisation": "forward Euler at dt: synaptic current, membrane, threshold (>), "
                          "reset (see docs/nir.md); IF and I integrate per step (no dt)",
        "resets": {n: v.metadata.get("reset") for n, v in graph.nodes.items()
                   if isinstance(v, RESETTABLE)},
        "units": "per sample (a sample = the whole run of T steps), not per token",
        "output_spikes": {n: int(np.count_nonzero(v.numpy())) for n, v in result.outputs.items()},
        "quantisation": graph.metadata.get("quantise"),
        "legality": legal.to_dict() if (legal := legality_of(graph)) else None,
        "estimate": {"model": MODEL, "assumptions": ASSUMPTIONS},
        **summary,
    }
    with writing(output_dir, force) as tmp:
        save(graph, tmp / "model.stac.json")
        np.savez(tmp / "spikes.npz", **{n.replace("/", "_"): v.numpy()
                                        for n, v in result.traces.items()})
        report["seconds"] = time.perf_counter() - started
        write_json(tmp / "report.json", report)
        (tmp / "report.md").write_text(_markdown(report))
    return report


def _markdown(report: dict[str, Any]) -> str:
    from stac.ir.passes.legality import format_legality

    t = report["total"]
    lines = [
        f"# stac report: {report['model']} on {report['target']}",
        "",
        f"- T = {report['timesteps']} steps of dt = {report['dt_s']} s; {report['input']}",
        f"- {report['discretisation']}",
        f"- spikes {t['spikes']:.0f}, synops {t['synops']:.0f}, neuron updates "
        f"{t['neuron_updates']:.0f} ({report['units']})",
        f"- energy {t['energy_j']:.4g} J (chip dynamic {t['chip_dynamic_energy_j']:.4g}, "
        f"static {t['chip_static_energy_j']:.4g}, host {t['host_energy_j']:.4g}); "
        f"latency {t['latency_s']:.4g} s; {t['chips']} chip(s), {t['cores']} cores",
    ]
    if report.get("quantisation"):
        lines.append(f"- weights and neuron parameters of the chip nodes are quantised to "
                     f"{report['quantisation']['profile']}'s widths before the run (per-layer "
                     "errors under `quantisation` in report.json): the counts and the recorded "
                     "spikes are those of the quantised network")
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
    return (f"{report['model']} on {report['target']}: T={report['timesteps']} "
            f"(dt={report['dt_s']} s), spikes {t['spikes']:.0f}, synops {t['synops']:.0f}, "
            f"energy {t['energy_j']:.4g} J per sample, latency {t['latency_s']:.4g} s, "
            f"{t['cores']} cores")


__all__ = ["export_nir", "format_import", "import_nir", "load_source"]
