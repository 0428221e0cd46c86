"""``stac import-nir``: any NIR file (or a lava-dl netx ``.net`` file) -> the same passes,
executor and report as a converted transformer: read (with ``dt``) -> fit the profile ->
step-by-step run on an input -> price (:mod:`stac.pipeline`) -> ``report.json``,
``report.md``, the recorded spikes and the IR, written atomically.

A ``.net`` file is read by :func:`stac.ir.netx_io.read_netx` with the chip's own integers and
run by the bit-accurate :class:`stac.sim.netx_fixed.NetxRunner` (one Loihi step per timestep;
``dt`` and ``reset`` do not apply).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import nir
import numpy as np

from stac import __version__
from stac.backends import resolve_target, target_label
from stac.errors import StacError
from stac.files import check_output_dir, write_json, writing
from stac.ir import save
from stac.ir.graph import input_shape, output_shape
from stac.ir.nodes import LoihiCubaLIF, SigmaDelta
from stac.ir.netx_io import read_netx
from stac.ir.nir_io import RESET_ORIGIN, RESETTABLE, read_nir
from stac.ir.results import legality_of
from stac.pipeline import fit, is_recurrent, price, run_steps
from stac.limits import MAX_STEPS, array_bytes, check_bytes, check_count, check_hdf5
from stac.profiles import host_profile
from stac.reporting.nir import format_import, to_markdown
from stac.reporting.schema import IMPORT_REPORT_VERSION
from stac.sim.cost import ASSUMPTIONS, MODEL


def load_input(
    path: str | Path | None, shape: tuple[int, ...], steps: int | None
) -> tuple[np.ndarray, str]:
    """The drive for an import-nir run and a note saying what it is."""
    if path is None:
        if steps is None:
            raise StacError("give --steps (or --input FILE.npy to take the steps from it)")
        return np.zeros((steps, 1, *shape), np.float32), (
            f"input: zeros of shape {(steps, *shape)} (no --input given); counts show the "
            "graph's response to biases only"
        )
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


def conventions(graph: nir.NIRGraph, reset: str | None) -> list[str]:
    """One line per run convention the file left open: which reset each neuron ran with and
    where it came from, and the recurrent-bias convention (for a NIR file)."""
    by: dict[tuple[str, str], list[str]] = {}
    for name, node in graph.nodes.items():
        meta = getattr(node, "metadata", None) or {}
        if isinstance(node, RESETTABLE) and "reset" in meta:
            by.setdefault((meta["reset"], meta.get(RESET_ORIGIN, "file")), []).append(name)
    said = {"file": "the file's own", "option": "--reset", "default": "default, the file says none"}
    lines = [
        f"reset: {rule} ({said.get(origin, origin)}) on {', '.join(names)}"
        for (rule, origin), names in sorted(by.items())
    ]
    if reset and any(o == "file" and r != reset for r, o in by):
        lines.append(f"note: --reset {reset} applies only to neurons whose file does not say")
    if "recurrent_bias" in graph.metadata:
        conv = graph.metadata["recurrent_bias"]
        weights = graph.metadata.get("recurrent_weights") or []
        when = "at step 0, as snnTorch" if conv == "snntorch" else "from step 1, as Norse"
        lines.append(
            f"recurrent bias: {conv} (a recurrent weight's bias reaches its neuron {when})"
            + (f" on {', '.join(weights)}" if weights else "; the graph has no recurrent Affine")
        )
    return lines


def check_run_size(graph: nir.NIRGraph, steps: int, batch: int) -> None:
    """Refuse a run whose drive and recorded traces would exceed the memory budget, before
    allocating them: ``steps x batch x`` every node's output, 4 bytes each (an upper bound:
    the stepper records the neurons' and the outputs' traces)."""
    sizes = {n: array_bytes(output_shape(v)) for n, v in graph.nodes.items()}
    largest = max(sizes, key=sizes.__getitem__)
    shape = output_shape(graph.nodes[largest])
    check_bytes(
        f"the run of --steps {steps} (batch {batch}) over {len(sizes)} node(s), the largest "
        f"{largest!r} of shape {shape}",
        steps * batch * sum(sizes.values()),
    )


def import_nir(
    path: str | Path,
    target: str,
    dt: float,
    output_dir: str | Path,
    steps: int | None = None,
    input_path: str | Path | None = None,
    reset: str | None = None,
    force: bool = False,
    recurrent_bias: str | None = None,
) -> dict[str, Any]:
    """Import, partition, run and report; return the report."""
    started = time.perf_counter()
    output_dir = Path(output_dir)
    profile, _ = resolve_target(target)  # the run is the simulator's stepper on any backend
    host = host_profile(profile)
    reads = [Path(p) for p in (path, input_path, profile.path) if p is not None]
    check_output_dir(output_dir, force, reads)
    if steps is not None:
        check_count("--steps", steps, 1, MAX_STEPS)
    check_hdf5(path, "NIR file" if Path(path).suffix != ".net" else "netx file")
    netx = Path(path).suffix == ".net"
    if netx:
        if reset is not None or recurrent_bias is not None:
            raise StacError(
                "--reset and --recurrent-bias apply to NIR files; a netx file carries its "
                "neurons' own reset and recurrence"
            )
        graph = read_netx(path, profile)
    else:
        graph = read_nir(path, dt=dt, reset=reset, recurrent_bias=recurrent_bias or "snntorch")
    ran = [] if netx else conventions(graph, reset)
    check_run_size(graph, steps or 1, 1)  # the declared shapes, before the passes see them
    recurrent = is_recurrent(graph)
    graph = fit(graph, profile, source=path)
    inputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise StacError(
            f"import-nir runs graphs with one Input node; {path} has "
            f"{len(inputs)} ({', '.join(inputs)})"
        )
    shape = input_shape(graph.nodes[inputs[0]])
    x, input_note = load_input(input_path, shape, steps)
    if x.ndim >= 1 and x.shape[0]:  # the batch a drive [T, (B,) *shape] gives the run
        batch = max(1, x.size // (x.shape[0] * max(1, int(np.prod(shape)))))
        check_run_size(graph, int(steps or x.shape[0]), batch)
    result = run_steps(graph, x, steps, profile)
    t = int(steps if steps is not None else x.shape[0])
    batch = int(next(iter(result.outputs.values())).shape[1]) if result.outputs else 1
    summary = price(graph, result.stats, profile, t, batch)
    spikes = sum(s.spikes for s in result.stats.values())
    spiking_updates = sum(
        s.neuron_updates
        for n, s in result.stats.items()
        if isinstance(graph.nodes[n], (*RESETTABLE, SigmaDelta, LoihiCubaLIF))
    )
    summary["total"]["spike_rate"] = spikes / spiking_updates if spiking_updates else 0.0
    report = {
        "schema_version": IMPORT_REPORT_VERSION,
        "stac_version": __version__,
        "model": f"{'netx' if netx else 'nir'}:{Path(path).name}",
        "source": str(path),
        "target": target,
        "profile": profile.name,
        "host_profile": host.name,
        "timesteps": t,
        "dt_s": None if netx else dt,
        "batch": batch,
        "recurrent": recurrent,
        "input": input_note,
        "discretisation": (
            "lava-dl netx fixed point, bit-accurate (one Loihi step per timestep)"
            if netx
            else "forward Euler at dt: synaptic current, membrane, threshold (>), reset (see "
            "docs/nir.md); IF and I integrate per step (no dt)"
        ),
        "conventions": ran,
        "recurrent_bias": None if netx else graph.metadata.get("recurrent_bias"),
        "reset_origins": {
            n: getattr(v, "metadata", {}).get(RESET_ORIGIN)
            for n, v in graph.nodes.items()
            if isinstance(v, RESETTABLE)
        },
        "resets": {
            n: getattr(v, "metadata", {}).get("reset")
            for n, v in graph.nodes.items()
            if isinstance(v, RESETTABLE)
        },
        "units": "per sample (a sample = the whole run of T steps), not per token",
        "output_spikes": {n: int(np.count_nonzero(v.numpy())) for n, v in result.outputs.items()},
        "quantisation": graph.metadata.get("quantise"),
        "legality": legal.to_dict() if (legal := legality_of(graph)) else None,
        "estimate": {"model": MODEL, "assumptions": ASSUMPTIONS},
        **summary,
    }
    with writing(output_dir, force, reads) as tmp:
        save(graph, tmp / "model.stac.json")
        np.savez(
            tmp / "spikes.npz", **{n.replace("/", "_"): v.numpy() for n, v in result.traces.items()}
        )
        report["seconds"] = time.perf_counter() - started
        write_json(tmp / "report.json", report)
        (tmp / "report.md").write_text(to_markdown(report))
    return report


def run(args: argparse.Namespace) -> int:
    out = args.output_dir or Path("out") / f"{args.file.stem}-{target_label(args.target)}"
    report = import_nir(
        args.file,
        args.target,
        args.dt,
        out,
        steps=args.steps,
        input_path=args.input,
        reset=args.reset,
        force=args.force,
        recurrent_bias=args.recurrent_bias,
    )
    for line in report["conventions"]:
        print(line)
    print(format_import(report))
    print(f"report: {out / 'report.json'}")
    return 0


__all__ = ["import_nir", "load_input", "run"]
