"""``stac finetune``: surrogate-gradient fine-tuning of a compiled artifact.

Reads an artifact, distils its spiking forward towards the float model it was converted from
(:mod:`stac.train.finetune`), and writes into ``--output-dir``:

* ``artifact/``: an ordinary artifact (refitted to its target by the same passes as
  ``stac compile``, written atomically with the same writer), which every command accepts;
* ``checkpoints/step-*.safetensors`` (+ ``.json``): parameters, optimiser and random state;
* ``curves.png`` and ``history.json``: loss and spike rate per step.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stac import __version__
from stac.artifact import IR_FILE, check_source, copy_profiles, load_artifact, write_manifest
from stac.backends import resolve_target
from stac.commands.compile import DEFAULT_PROMPT, check_payloads, encoder_table
from stac.errors import StacError
from stac.files import check_output_dir, write_json, writing
from stac.frontend.models import load_model
from stac.frontend.text import with_bos
from stac.ir import save
from stac.ir.analysis import op_census, spike_driven_share
from stac.ir.nodes import SignedIF
from stac.ir.passes.legality import fit_report
from stac.pipeline import fit_run_price
from stac.profiles import host_profile
from stac.reporting.compile import to_markdown
from stac.reporting.schema import COMPILE_REPORT_VERSION
from stac.sim.cost import ASSUMPTIONS, MODEL
from stac.sim.semantics import RunContext
from stac.train.deadzone import init_dead_zones
from stac.train.finetune import FinetuneConfig, Trainer, plot_curves, text_windows
from stac.train.graphnet import GraphNet

log = logging.getLogger(__name__)

ARTIFACT = "artifact"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def finetune(
    artifact_dir: Path,
    text_path: Path,
    output_dir: Path,
    cfg: FinetuneConfig,
    resume: Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Train, then write the artifact; returns the summary written as ``finetune.json``."""
    started = time.perf_counter()
    art = load_artifact(artifact_dir)
    if not text_path.is_file():
        raise StacError(f"training text {text_path} does not exist")
    target = art.config.get("target")
    source = art.config.get("source_model")
    if not target or not source:
        raise StacError(f"{artifact_dir}/config.json names no target or source model")
    profile, backend = resolve_target(target)
    if art.profile is not None:  # the artifact's own copy of the profile it was compiled for
        profile = art.profile
    out_art = output_dir / ARTIFACT
    check_output_dir(out_art, force, [Path(artifact_dir), Path(text_path)])
    steps = cfg.timesteps or int(art.config.get("conversion", {}).get("timesteps", 0))
    if steps < 1:
        raise StacError(f"{artifact_dir}: its config states no timesteps; pass them")
    tokenizer = art.tokenizer()
    data = text_windows(tokenizer, text_path.read_text(encoding="utf-8"), cfg.seq_len)
    teacher = load_model(source).model.eval()
    check_source(art.config, teacher, source)  # distil from the model it was compiled from
    for p in teacher.parameters():
        p.requires_grad_(False)
    # the chip's graded spike width: a per-layer payload whose thresholds move apart is capped
    graded = bool(profile.get("spikes", "graded"))
    bits = int(profile.get("spikes", "payload_bits")) if graded else None
    zones = cfg.dead_zone_init is not None or cfg.dead_zone_lr > 0
    net = GraphNet(
        art.graph, learn=cfg.learned(), dead_zones=zones, slope=cfg.slope, payload_bits=bits
    )
    trainer = Trainer(net, teacher, data, cfg, steps)
    if cfg.dead_zone_init is not None and resume is None:
        first = data[: cfg.batch * cfg.dead_zone_batches].to(trainer.device)
        init_dead_zones(
            trainer.net,
            list(first.split(cfg.batch)),
            steps,
            cfg.dead_zone_init,
            cfg.dead_zone_score,
            dict(cfg.dead_zone_init_for),
        )
    if resume is not None:
        trainer.load(resume)
        log.info("resumed at step %d from %s", trainer.state.step, resume)
    output_dir.mkdir(parents=True, exist_ok=True)
    trainer.run(cfg.steps, output_dir)
    history = trainer.state.history
    write_json(output_dir / "history.json", history)
    plot_curves(history, output_dir / "curves.png", f"stac finetune of {source} (T = {steps})")
    graph = trainer.net.cpu().export(steps)
    summary = {
        "stac_version": __version__,
        "source_artifact": str(artifact_dir),
        "text": str(text_path),
        "windows": int(data.shape[0]),
        "config": {**asdict(cfg), "timesteps": steps},
        "steps_done": trainer.state.step,
        "seconds_per_step": sum(h["seconds"] for h in history) / max(len(history), 1),
        "first": history[0] if history else None,
        "last": history[-1] if history else None,
    }
    if zones:
        summary["dead_zones"] = dead_zone_summary(graph)
    write_artifact(art, graph, out_art, profile, backend, teacher.cpu(), summary, force)
    summary["total_seconds"] = time.perf_counter() - started
    write_json(output_dir / "finetune.json", summary)
    return summary


def dead_zone_summary(graph: Any) -> dict[str, Any]:
    """The exported dead zones in the chip's levels D (``d = (D - 1/2) theta``; D = 1 is none):
    the share of neurons with a zone and the median and largest D among them."""
    levels = np.concatenate(
        [
            np.round(np.asarray(v.dead_zone, np.float64) / v.threshold + 0.5)
            for v in graph.nodes.values()
            if isinstance(v, SignedIF) and v.dead_zone is not None
        ]
        or [np.ones(1)]
    )
    zoned = levels[levels > 1]
    return {
        "neurons": int(levels.size),
        "with_zone": float(zoned.size / levels.size),
        "median_levels": float(np.median(zoned)) if zoned.size else 1.0,
        "max_levels": float(levels.max()),
    }


def write_artifact(
    art: Any,
    graph: Any,
    out: Path,
    profile: Any,
    backend: Any,
    teacher: Any,
    summary: dict[str, Any],
    force: bool,
) -> None:
    """Refit the trained graph to its target (quantise, partition, legality), run it on the
    compile's prompt, and write it as ``stac compile`` writes an artifact."""
    graph.metadata = {k: v for k, v in graph.metadata.items() if k != "issues"}
    check_payloads(graph, profile)
    prompt = art.config.get("prompt") or DEFAULT_PROMPT
    tokenizer = art.tokenizer()
    ids = with_bos(tokenizer, tokenizer(prompt, return_tensors="pt").input_ids[0])[None]
    steps = summary["config"]["timesteps"]
    done = fit_run_price(graph, profile, backend, RunContext(ids, steps=steps))
    with torch.no_grad():
        float_logits = teacher(ids).logits
    agreement = float((done.outputs["output"].argmax(-1) == float_logits.argmax(-1)).float().mean())
    report = {
        "schema_version": COMPILE_REPORT_VERSION,
        "stac_version": __version__,
        "model": art.config.get("source_model"),
        "target": art.config.get("target"),
        "profile": profile.name,
        "timesteps": steps,
        "mode": art.config.get("conversion", {}).get("mode"),
        "prompt": prompt,
        "host_profile": host_profile(profile).name,
        "prompt_tokens": int(ids.shape[1]),
        "prompt_top1_agreement": agreement,
        "spike_driven_share": spike_driven_share(op_census(done.graph, context=ids.shape[1])),
        "estimate": {"model": MODEL, "assumptions": ASSUMPTIONS},
        **done.summary,
        "fit": fit_report(done.graph),
        "encoders": encoder_table(done.graph, done.stats),
        "finetune": summary,
    }
    conversion = {**art.config.get("conversion", {}), "timesteps": steps}
    with writing(out, force) as tmp:
        save(done.graph, tmp / IR_FILE)
        shutil.copytree(art.tokenizer_dir, tmp / "tokenizer")
        profiles = copy_profiles(tmp, profile, art.host or host_profile(profile))
        write_json(
            tmp / "config.json",
            {
                **art.config,
                "stac_version": __version__,
                "conversion": conversion,
                "finetune": summary,
                "profiles": profiles,
            },
        )
        write_json(tmp / "report.json", report)
        (tmp / "report.md").write_text(to_markdown(report))
        (tmp / "finetune.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
        write_manifest(tmp)  # last: the sha256 of every file written above
    log.info("wrote %s", out)


def _override(text: str) -> tuple[str, float]:
    """``PART=Q`` of ``--dead-zone-init-for``."""
    part, sep, q = text.partition("=")
    try:
        return part, float(q) if sep and part else float("nan")
    except ValueError:
        raise StacError(f"--dead-zone-init-for wants NAME_PART=Q, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    cfg = FinetuneConfig(
        steps=args.steps,
        lr=args.lr,
        threshold_lr=args.threshold_lr,
        batch=args.batch,
        seq_len=args.seq_len,
        spike_l1=args.spike_l1,
        hidden_match=args.hidden_match,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        device=args.device or default_device(),
        dead_zone_lr=args.dead_zone_lr,
        dead_zone_init=args.dead_zone_init,
        dead_zone_score=args.dead_zone_score,
        dead_zone_init_for=tuple(_override(v) for v in args.dead_zone_init_for or ()),
    )
    summary = finetune(
        Path(args.artifact), args.text, args.output_dir, cfg, args.resume, args.force
    )
    first, last = summary["first"], summary["last"]
    if first and last:
        print(
            f"loss {first['loss']:.4f} -> {last['loss']:.4f}, KL {first['kl']:.4f} -> "
            f"{last['kl']:.4f}, spikes/token {first['spikes_per_token']:.0f} -> "
            f"{last['spikes_per_token']:.0f} over {summary['steps_done']} steps "
            f"({summary['seconds_per_step']:.2f} s/step)"
        )
    print(f"artifact: {args.output_dir / ARTIFACT}")
    return 0


__all__ = ["ARTIFACT", "default_device", "finetune", "run", "write_artifact"]
