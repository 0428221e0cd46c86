"""Spikes a sigma-delta code across tokens would send, counted on a compiled artifact.

Each encoder of a full-mode artifact sends, per token, its level ``n = sum_t s_t`` (onset
drive: ``ceil(|n| / K)`` spikes of at most K each). A code that kept each neuron's accumulator
from one token to the next would send only the change ``n_t - n_(t-1)`` (the first token of a
window against 0), in ``ceil(|change| / K)`` spikes: the same levels reach the synapses, so the
fidelity is unchanged, and only the spike count differs. This script runs the artifact in stac's
simulator on held-out windows, records every encoder's payloads, and prints both counts per
encoder group. Usage::

    python benchmarks/delta_proxy.py ARTIFACT [--windows 4] [--window 128] [--output F]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from stac.artifact import load_artifact
from stac.eval import windows
from stac.frontend.text import evaluation_text
from stac.ir.nodes import SignedIF
from stac.sim.semantics import SEMANTICS, RunContext
from stac.sim.simulator import Simulator

log = logging.getLogger("delta_proxy")


def group(name: str) -> str:
    """``layer7_down_in`` -> ``down_in``; ``lm_head_in`` stays."""
    return name.split("_", 1)[1] if name.startswith("layer") else name


def count(graph: Any, chunk: torch.Tensor, steps: int) -> dict[str, list[int]]:
    """Per encoder group: [spikes sent, spikes a code of level changes would send]."""
    seen: dict[str, tuple[torch.Tensor, int]] = {}

    def record(node: SignedIF, inp: Any, ctx: RunContext, name: str, need: bool) -> Any:
        out, stats = SEMANTICS[SignedIF](node, inp, ctx, name, need)
        payload = (out.value / ctx.params(node.threshold)).round()  # [T, 1, N, n]
        seen[name] = (payload[:, 0], int(node.max_payload))
        assert int(torch.count_nonzero(payload)) == stats.spikes
        return out, stats

    encoders = [k for k, v in graph.nodes.items() if isinstance(v, SignedIF)]
    Simulator(graph, dict.fromkeys(encoders, record)).run(RunContext(chunk[None], steps=steps))
    out: dict[str, list[int]] = {}
    for name, (payload, k) in seen.items():
        level = payload.sum(0)  # [N, n]
        change = torch.diff(level, dim=0, prepend=torch.zeros_like(level[:1]))
        row = out.setdefault(group(name), [0, 0])
        row[0] += int(torch.count_nonzero(payload))
        row[1] += int(torch.ceil(change.abs() / k).sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--windows", type=int, default=4, help="held-out windows")
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--output", type=Path, default=Path("benchmarks/results/delta_proxy.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    art = load_artifact(args.artifact)
    steps = int(art.config["conversion"]["timesteps"])
    tok = art.tokenizer()
    ids = tok(evaluation_text(), return_tensors="pt").input_ids[0]
    totals: dict[str, list[int]] = {}
    for chunk in windows(tok, ids, args.window, args.windows):
        for name, (sent, delta) in count(art.graph, chunk, steps).items():
            row = totals.setdefault(name, [0, 0])
            row[0], row[1] = row[0] + sent, row[1] + delta
    totals["all"] = [sum(v[0] for v in totals.values()), sum(v[1] for v in totals.values())]
    print(f"\n{args.artifact}, T = {steps}, {args.windows} windows of {args.window} tokens")
    print(f"{'encoders':<12} {'spikes':>12} {'as changes':>12} {'change':>8}")
    for name, (sent, delta) in totals.items():
        print(f"{name:<12} {sent:>12} {delta:>12} {delta / max(sent, 1) - 1:>+8.1%}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    doc = {"artifact": str(args.artifact), "timesteps": steps, "windows": args.windows}
    doc |= {
        "window": args.window,
        "spikes": {k: {"sent": v[0], "as_changes": v[1]} for k, v in totals.items()},
    }
    args.output.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
