"""``stac explore``: sweep T, mode, payload bits, weight bits and batch; price every point on
every target; write the results (JSON lines, resumable), the Pareto fronts (markdown and PNG)
and, if asked, the chosen artifact.

Outputs under ``--output-dir``: ``points.jsonl`` (one record per point, appended as each
finishes), ``pareto.md``, ``pareto.png``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from stac.errors import StacError
from stac.explore.grid import Point, expand, int_list, name_list
from stac.explore.pareto import choose, markdown, plot
from stac.explore.point import Settings, compile_point
from stac.explore.runner import run_sweep

log = logging.getLogger(__name__)


def _bits(text: str | None, option: str) -> list[int | None]:
    return [None] if text is None else list(int_list(text, option))


def run(args: argparse.Namespace) -> int:
    from stac.commands.report import parse_targets
    from stac.frontend.convert import MODES

    targets = parse_targets(args.targets)
    if args.eval_windows < 1:
        raise StacError(f"--eval-windows must be at least 1, got {args.eval_windows}")
    batches = int_list(args.batch, "--batch")
    if any(b < 1 for b in batches):
        raise StacError(f"--batch values must be at least 1, got {args.batch}")
    points = expand(
        args.model,
        name_list(args.mode, "--mode", MODES),
        int_list(args.timesteps, "--timesteps"),
        _bits(args.payload_bits, "--payload-bits"),
        _bits(args.weight_bits, "--weight-bits"),
        batches,
    )
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        targets=tuple(targets),
        work_dir=str(out / "work"),
        compile_target=args.compile_target,
        calibration_passages=args.calibration_passages,
        eval_windows=args.eval_windows,
        window=args.window,
        cache_dir=None if args.cache_dir is None else str(args.cache_dir),
        threads=args.threads,
        keep_artifacts=args.keep_artifacts,
    )
    records = run_sweep(
        points,
        settings,
        out / "points.jsonl",
        use_ray=not args.no_ray,
        address=args.address,
        num_cpus=args.num_cpus,
        memory_gb=args.memory_gb,
        retry_failed=args.retry_failed,
    )
    (out / "pareto.md").write_text(markdown(records, targets))
    plot(records, targets, out / "pareto.png")
    failed = [r for r in records if r["status"] == "error"]
    print((out / "pareto.md").read_text())
    print(
        f"{len(records)} point(s), {len(failed)} failed; results: {out}/points.jsonl, "
        f"pareto.md, pareto.png"
    )
    if args.write_best is not None:
        best_target = args.best_target or targets[0]
        best = choose(records, best_target, args.max_ratio)
        dest = Path(args.write_best)
        if dest.exists() and not args.force:
            raise StacError(f"{dest} exists; pass --force to replace it")
        # Recompiled from the calibration cache (seconds): points keep no artifact by default.
        compile_point(Point(**best["point"]), settings, dest)
        print(
            f"best on {best_target} (lowest energy per token with ppl ratio <= "
            f"{args.max_ratio:g}): {best['label']} -> {dest}"
        )
    return 0 if len(failed) < len(records) or not records else 1


__all__ = ["run"]
