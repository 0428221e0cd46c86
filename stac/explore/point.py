"""One point of a sweep: convert, score fidelity on held-out text, price on every target.

Runs in a Ray worker or in-process; takes and returns plain data (a :class:`Settings`, a
:class:`~stac.explore.grid.Point`, a JSON-ready dict) so that nothing but those crosses the
process boundary. The conversion reads and fills the calibration cache (:mod:`stac.cache`), so
the points after the first on the same model skip the passes they share.
"""

from __future__ import annotations

import inspect
import logging
import shutil
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from stac.errors import StacError
from stac.explore.grid import Point

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """What every point of a sweep shares."""

    targets: tuple[str, ...]  # profiles priced (neuromorphic and dense)
    work_dir: str  # where each point's artifact and report are written
    compile_target: str = "loihi2-sim"  # <profile>-<backend> the artifact is compiled for
    calibration_passages: int = 16
    eval_windows: int = 4  # held-out windows scored per point (the sample size)
    window: int = 128  # tokens per held-out window (BOS + 127)
    cache_dir: str | None = None  # calibration cache (None: stac.cache.default_root())
    threads: int = 1  # torch threads per point
    keep_artifacts: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def conversion_config(point: Point, compile_target: str, passages: int) -> Any:
    """The :class:`ConversionConfig` of ``point``, with ``stac compile``'s defaults for the
    options the point leaves open (the profile's weight bits and payload limit)."""
    from stac.commands.compile import full_mode_options
    from stac.frontend import ConversionConfig

    return ConversionConfig(
        timesteps=point.timesteps,
        mode=point.mode,
        calibration_passages=passages,
        **full_mode_options(
            compile_target,
            point.mode,
            payload_bits=point.payload_bits,
            weight_bits=point.weight_bits,
        ),
    )


def compile_point(point: Point, settings: Settings, out: Path) -> dict[str, Any]:
    """``stac compile`` of ``point`` into ``out`` with the calibration cache on."""
    from stac.cache import caching
    from stac.commands.compile import CompileRequest, compile_model

    cfg = conversion_config(point, settings.compile_target, settings.calibration_passages)
    req = CompileRequest(point.model, settings.compile_target, out, cfg, force=True)
    cpu = time.process_time()
    with caching(settings.cache_dir) as cache:
        report = compile_model(req)
    return {
        "hits": cache.hits,
        "misses": cache.misses,
        "compile_s": report["compile_seconds"],
        "compile_cpu_s": time.process_time() - cpu,
    }


def _float_reference(model_name: str, chunks: list[torch.Tensor]) -> list[torch.Tensor]:
    """The float model's logits on ``chunks``, cached with the calibration results."""
    from stac.cache import cached, fingerprint_model, fingerprint_tensors
    from stac.eval import float_logits
    from stac.frontend.models import load_model

    model = load_model(model_name).model
    key = {"model": fingerprint_model(model), "text": fingerprint_tensors(chunks)}
    return cached(
        "float_logits",
        key,
        lambda: float_logits(model, chunks),
        lambda ls: {str(i): t for i, t in enumerate(ls)},
        lambda d: [d[str(i)] for i in range(len(d))],
    )


def fidelity(artifact: Path, settings: Settings) -> dict[str, Any]:
    """The artifact at its own T against its float model on ``settings.eval_windows`` held-out
    windows (``stac eval``'s text and windows: the evaluation plays, never calibrated on)."""
    from stac.artifact import load_artifact
    from stac.cache import caching
    from stac.eval import evaluate, windows
    from stac.frontend.text import evaluation_text

    art = load_artifact(artifact)
    tokenizer = art.tokenizer()
    ids = tokenizer(evaluation_text(), return_tensors="pt").input_ids[0]
    chunks = windows(tokenizer, ids, settings.window, settings.eval_windows)
    with caching(settings.cache_dir):
        reference = _float_reference(art.config["source_model"], chunks)
    steps = int(art.config["conversion"]["timesteps"])
    (result,) = evaluate(art.graph, chunks, [steps], reference)
    out = result.as_dict()
    out.pop("layer_spike_rates")
    return out


def batch_supported() -> bool:
    """Whether the pricing (:func:`stac.commands.report.report_artifact`) takes a batch."""
    from stac.commands.report import report_artifact

    return "batch" in inspect.signature(report_artifact).parameters


def price(artifact: Path, point: Point, settings: Settings, out: Path) -> dict[str, Any]:
    """Every target's figures per token from ``stac report``'s path (its public function)."""
    from stac.commands.report import report_artifact

    extra: dict[str, Any] = {"batch": point.batch} if batch_supported() else {}
    report = report_artifact(artifact, list(settings.targets), out, force=True, **extra)
    rows: dict[str, Any] = {}
    for row in report["targets"]:
        if "error" in row:
            rows[row["target"]] = {"error": row["error"]}
            continue
        total = row["total"]
        latency = float(total["latency_s"])
        rows[row["target"]] = {
            "kind": row["kind"],
            "energy_j": float(total["energy_j"]),
            "latency_s": latency,
            "tokens_per_s": float(total.get("tokens_per_s", 1.0 / latency if latency > 0 else 0.0)),
            **{k: row[k] for k in ("chips", "cores") if k in row},
        }
    return rows


def run_point(point: Point, settings: Settings) -> dict[str, Any]:
    """The point's record: its fidelity and its price on every target."""
    torch.set_num_threads(settings.threads)
    wall, cpu = time.perf_counter(), time.process_time()
    record: dict[str, Any] = {"key": point.key, "point": point.as_dict(), "label": point.label}
    if point.batch != 1 and not batch_supported():
        record.update(
            status="not_priced",
            note=f"batch {point.batch} not priced: this stac's pricing (stac report) takes no "
            "batch; the batch-1 point has the figures",
        )
        return record
    work = Path(settings.work_dir) / point.digest
    artifact = work / "artifact"
    try:
        record["cache"] = compile_point(point, settings, artifact)
        record["compile_wall_s"] = time.perf_counter() - wall
        record["fidelity"] = fidelity(artifact, settings)
        record["targets"] = price(artifact, point, settings, work / "report")
        record["status"] = "ok"
    finally:
        if not settings.keep_artifacts:
            shutil.rmtree(work, ignore_errors=True)
        else:
            record["artifact"] = str(artifact)
    record["wall_s"] = time.perf_counter() - wall
    record["cpu_s"] = time.process_time() - cpu
    return record


def run_point_safe(point: Point, settings: Settings) -> dict[str, Any]:
    """:func:`run_point`, a failure recorded (its error and the traceback's last lines)
    instead of raised, so that it never stops the sweep."""
    try:
        return run_point(point, settings)
    except Exception as exc:  # noqa: BLE001 - any failure of one point is recorded, not raised
        kind = "StacError" if isinstance(exc, StacError) else type(exc).__name__
        log.warning("point %s failed: %s", point.label, exc)
        return {
            "key": point.key,
            "point": point.as_dict(),
            "label": point.label,
            "status": "error",
            "error": f"{kind}: {exc}",
            "traceback": traceback.format_exc().splitlines()[-6:],
        }


__all__ = ["Settings", "batch_supported", "conversion_config", "run_point", "run_point_safe"]
