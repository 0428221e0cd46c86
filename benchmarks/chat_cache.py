"""Generation speed with and without the KV cache, and cache memory per token: a table.

    .venv/bin/python benchmarks/chat_cache.py [--artifact DIR] [-T 16] [--contexts 32,128,384]
        [--new-tokens 8] [--repeats 3] [--threads N]

Without ``--artifact`` the bundled SmolLM2-135M-Instruct is compiled for loihi2-sim first (the
compile API, ``--calibration-passages`` windows; speed hardly depends on the thresholds).

For each context length C, on real text (Hamlet, BOS first): a conversation is prefilled
with C tokens, then ``--new-tokens`` tokens are fed one at a time, (a) with the KV cache (each
step computes one token against the cached keys) and (b) without it (each step recomputes
the whole history, ``use_cache=False``). Both feed the same tokens, alternate within each
repeat, and the table gives the median tokens/s of each, so the ratio is measured side by
side on this (shared, noisy) machine. Cache memory is what the processor actually holds per
token, beside the figure from the graph's shapes (2 x kv heads x head dim x 4 bytes per
attention node).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from stac.artifact import load_artifact
from stac.frontend.text import play_text, with_bos
from stac.ir.nodes import CausalSelfAttention
from stac.runtime import TemporalSpikeProcessor

from record import Record, recording


def compile_bundled(out: Path, steps: int, passages: int) -> Path:
    from stac.commands.compile import CompileRequest, compile_model
    from stac.frontend import ConversionConfig

    compile_model(
        CompileRequest(
            "smollm2-135m",
            "loihi2-sim",
            out,
            prompt="Hello there.",
            conversion=ConversionConfig(steps, calibration_passages=passages),
        )
    )
    return out


def decode_rate(
    proc: TemporalSpikeProcessor, prompt: list[int], new: list[int], use_cache: bool
) -> tuple[float, float, int]:
    """(tokens/s over the one-token steps, prefill seconds, cache bytes at the end)."""
    cid = proc.open()
    started = time.perf_counter()
    proc([prompt], use_cache=use_cache, conversation_ids=[cid])
    prefill = time.perf_counter() - started
    started = time.perf_counter()
    for tok in new:
        proc([[tok]], use_cache=use_cache, conversation_ids=[cid])
    rate = len(new) / (time.perf_counter() - started)
    held = proc.cache_bytes(cid)
    proc.remove(cid)
    return rate, prefill, held


def main(record: Record) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifact", type=Path, default=None)
    parser.add_argument("-T", "--timesteps", type=int, default=16)
    parser.add_argument("--contexts", default="32,128,384")
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calibration-passages", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    contexts = [int(c) for c in args.contexts.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        path = args.artifact or compile_bundled(
            Path(tmp) / "smollm2", args.timesteps, args.calibration_passages
        )
        artifact = load_artifact(path)
        tokenizer = artifact.tokenizer()
        text = tokenizer(play_text("tragedies/hamlet")[:40000], return_tensors="pt").input_ids[0]
        ids = with_bos(tokenizer, text).tolist()
        longest = max(contexts) + args.new_tokens
        proc = TemporalSpikeProcessor(artifact, T=args.timesteps, max_context_length=longest)
        per_token = sum(
            2 * n.num_kv_heads * n.head_dim * 4
            for n in artifact.graph.nodes.values()
            if isinstance(n, CausalSelfAttention)
        )
        proc([ids[:4]], conversation_ids=[proc.open("warm-up")])
        rows = []
        for ctx in contexts:
            prompt, new = ids[:ctx], ids[ctx : ctx + args.new_tokens]
            cached, plain, prefill, held = [], [], [], 0
            for _ in range(args.repeats):
                rate, pre, held = decode_rate(proc, prompt, new, use_cache=True)
                cached.append(rate)
                prefill.append(pre)
                plain.append(decode_rate(proc, prompt, new, use_cache=False)[0])
            rows.append(
                (
                    ctx,
                    statistics.median(cached),
                    statistics.median(plain),
                    statistics.median(prefill),
                    held / (ctx + len(new)),
                )
            )
    load = os.getloadavg()[0]
    print(
        f"{artifact.config['source_model']} at T={proc.T} on the simulator; "
        f"{args.new_tokens} one-token steps after the context, median of {args.repeats}; "
        f"torch threads {torch.get_num_threads()}, load average {load:.1f} on "
        f"{os.cpu_count()} cores"
    )
    print(
        f"{'context':>8} {'cached tok/s':>13} {'no-cache tok/s':>15} {'speed-up':>9} "
        f"{'prefill s':>10} {'cache B/token':>14} {'from shapes':>12}"
    )
    for ctx, c, p, pre, bpt in rows:
        print(
            f"{ctx:>8} {c:>13.2f} {p:>15.3f} {c / p:>8.1f}x {pre:>10.2f} {bpt:>14,.0f} "
            f"{per_token:>12,}"
        )
    record.data["timesteps"] = proc.T
    record.data["new_tokens"] = args.new_tokens
    record.data["repeats"] = args.repeats
    record.data["torch_threads"] = torch.get_num_threads()
    record.data["rows"] = [
        {
            "context": ctx,
            "cached_tokens_per_s": c,
            "uncached_tokens_per_s": p,
            "speed_up": c / p,
            "prefill_s": pre,
            "cache_bytes_per_token": bpt,
            "cache_bytes_per_token_from_shapes": per_token,
        }
        for ctx, c, p, pre, bpt in rows
    ]


if __name__ == "__main__":
    with recording("chat_cache") as rec:
        main(rec)
