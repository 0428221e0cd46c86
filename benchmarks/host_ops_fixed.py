"""Fidelity of the host ops moved onto the chip in Lava's fixed point, one op type at a time.

    PYTHONPATH=. .venv/bin/python benchmarks/host_ops_fixed.py ART --timesteps 2
        --max-tokens 512 --only Residual --json benchmarks/results/host_ops_fixed_residual.json

``stac eval ART --host-ops-on-chip`` runs every host op Loihi 2's ``[capabilities]`` moves in
fixed point (:mod:`stac.sim.onchip_fixed`). This script does the same with the profile's
capabilities cut to the types named by ``--only``, to say which moved op costs what: the
others stay on the host in float. Same held-out sample and reference as ``stac eval``
(windows of 128 tokens of the tragedies; calibration on two windows of the comedies).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stac.artifact import load_artifact
from stac.commands.eval import DEFAULT_CALIBRATION_WINDOWS, DEFAULT_WINDOW
from stac.eval import evaluate, float_logits, windows
from stac.frontend.models import load_model
from stac.frontend.text import calibration_windows, evaluation_text
from stac.profiles import load_profile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--timesteps", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--only", required=True, help="comma-separated node types: Residual,RMSNorm")
    ap.add_argument("--profile", default="loihi2")
    ap.add_argument(
        "--first-position-norms",
        choices=("host", "chip"),
        default="host",
        help="where the RMSNorms of each window's first token run (stac eval's option)",
    )
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    artifact = load_artifact(args.artifact)
    tokenizer = artifact.tokenizer()
    ids = tokenizer(evaluation_text(), return_tensors="pt").input_ids[0]
    count = min(ids.numel(), args.max_tokens) // (DEFAULT_WINDOW - 1)
    chunks = windows(tokenizer, ids, DEFAULT_WINDOW, count)
    profile = load_profile(args.profile)
    cut = profile.only_capabilities(args.only)
    only = list(cut.capabilities)
    reference = float_logits(load_model(artifact.config["source_model"]).model, chunks)
    calibration = calibration_windows(tokenizer, DEFAULT_CALIBRATION_WINDOWS, DEFAULT_WINDOW)
    host_ops: dict[int, object] = {}
    (result,) = evaluate(
        artifact.graph,
        chunks,
        [args.timesteps],
        reference,
        cut,
        calibration,
        host_ops,
        args.first_position_norms,
    )
    doc = {
        "artifact": str(args.artifact),
        "fixed_point_types": only,
        "first_position_norms": args.first_position_norms,
        "windows": count,
        "window": DEFAULT_WINDOW,
        "result": {k: v for k, v in result.as_dict().items() if k != "layer_spike_rates"},
        "host_ops_on_chip": host_ops[args.timesteps],
    }
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    r = doc["result"]
    print(
        f"{'+'.join(only)} in fixed point, T={args.timesteps}, {r['tokens']} tokens: "
        f"ratio {r['perplexity_ratio']:.4f}, top-1 {r['top1_agreement']:.3f}, KL {r['mean_kl']:.4f}"
    )


if __name__ == "__main__":
    main()
