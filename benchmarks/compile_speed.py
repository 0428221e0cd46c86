"""Compile speed of a sweep: the first point (cold calibration cache) against the further
points (the cache warm), wall and CPU seconds side by side, from one ``stac explore`` run.

    .venv/bin/python benchmarks/compile_speed.py [--model smollm2-135m] [--timesteps 1,2,4]
        [--mode full] [--eval-windows 4] [--targets loihi2,jetson-orin-nano] [--threads 1]
        [--output-dir benchmarks/results/explore-smollm2-full] [--json PATH]

It runs ``stac explore --no-ray`` in this process with a fresh, empty cache directory, so the
first point computes the float model's calibration statistics, the threshold search for its
T and the GPTQ rounding, and every further point on the same model reuses the statistics and
the rounding (only the threshold search for its own T runs again). Per point it prints the
conversion (``stac compile``: load, calibrate, lower, fit, run the prompt, write) and the
whole point (conversion + fidelity on the held-out sample + pricing on every target), each in
wall and process CPU seconds. The issue's goal: each further point within 60 s on 2 cores,
the first within 10 minutes. The sweep's results (points.jsonl, pareto.md, pareto.png) stay
in ``--output-dir``; the timings go to ``--json`` (default
benchmarks/results/compile_speed-<model>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from stac.cli import main as stac_main
from stac.explore.runner import load_records

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--timesteps", default="1,2,4")
    ap.add_argument("--mode", default="full")
    ap.add_argument("--eval-windows", type=int, default=4)
    ap.add_argument("--calibration-passages", type=int, default=16)
    ap.add_argument("--targets", default="loihi2,jetson-orin-nano")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--output-dir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--summarise-only",
        action="store_true",
        help="only print and write the timings of the sweep already in --output-dir",
    )
    args = ap.parse_args()
    name = Path(args.model).name
    out = args.output_dir or RESULTS / f"explore-{name}-{args.mode}"
    if (out / "points.jsonl").exists() and not args.summarise_only:
        raise SystemExit(f"{out}/points.jsonl exists: a resumed sweep would time nothing")
    cache = Path(tempfile.mkdtemp(prefix="stac-compile-speed-cache-"))
    started = time.perf_counter()
    try:
        if not args.summarise_only:
            stac_main(
                [
                    "explore",
                    "--model", args.model,
                    "--timesteps", args.timesteps,
                    "--mode", args.mode,
                    "--targets", args.targets,
                    "--eval-windows", str(args.eval_windows),
                    "--calibration-passages", str(args.calibration_passages),
                    "--threads", str(args.threads),
                    "--output-dir", str(out),
                    "--cache-dir", str(cache),
                    "--no-ray",
                ]
            )  # fmt: skip
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    records = list(load_records(out / "points.jsonl").values())
    rows = []
    for i, r in enumerate(records):
        c = r.get("cache", {})
        rows.append(
            {
                "point": r["label"],
                "which": "first" if i == 0 else "further",
                "status": r["status"],
                "cache_hits": c.get("hits"),
                "compile_wall_s": c.get("compile_s"),
                "compile_cpu_s": c.get("compile_cpu_s"),
                "point_wall_s": r.get("wall_s"),
                "point_cpu_s": r.get("cpu_s"),
                "perplexity_ratio": r.get("fidelity", {}).get("perplexity_ratio"),
            }
        )
    print(f"\n{args.model}, {args.mode} mode, {args.threads} torch thread(s), cold cache first")
    print(
        f"{'point':<16} {'which':<8} {'hits':>4} {'compile wall':>13} {'compile CPU':>12} "
        f"{'point wall':>11} {'point CPU':>10} {'ppl ratio':>10}"
    )

    def f(x: float | None, fmt: str = ".1f") -> str:
        return "-" if x is None else format(x, fmt)

    for r in rows:
        print(
            f"{r['point']:<16} {r['which']:<8} {f(r['cache_hits'], 'd'):>4} "
            f"{f(r['compile_wall_s']):>13} {f(r['compile_cpu_s']):>12} "
            f"{f(r['point_wall_s']):>11} {f(r['point_cpu_s']):>10} "
            f"{f(r['perplexity_ratio'], '.4f'):>10}"
        )
    doc = {
        "benchmark": "compile_speed",
        "model": args.model,
        "mode": args.mode,
        "timesteps": args.timesteps,
        "threads": args.threads,
        "eval_windows": args.eval_windows,
        "targets": args.targets,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "python": platform.python_version(),
        },
        "total_wall_s": None if args.summarise_only else time.perf_counter() - started,
        "points": rows,
        "sweep_results": str(out),
    }
    path = args.json or RESULTS / f"compile_speed-{name}-{args.mode}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"json: {path}")


if __name__ == "__main__":
    main()
