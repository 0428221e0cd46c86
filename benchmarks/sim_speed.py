"""Simulator speed: one token at T timesteps vs the float model's forward pass, side by side.

    .venv/bin/python benchmarks/sim_speed.py [--timesteps 1,4,8,16,32] [--repeats 7]
        [--models distilgpt2-shape,smollm2-135m] [--context 0] [--profile 16] [--threads N]

For each model, in one process and one run: the Hugging Face model's forward pass on one
token (fp32, ``torch.no_grad``) and stac's simulator on the converted graph for the same
token at each T, run alternately, each the median of ``--repeats`` runs after a warm-up.
The issue's goal is a simulator cost of at most 2 x T forward passes; the table prints the
ratio and that budget.

Models: ``distilgpt2-shape`` is GPT2Config(n_layer=6, n_embd=768, n_head=12) with random
weights (distilgpt2's weights are not available offline) and SmolLM2's tokenizer;
``smollm2-135m`` is the bundled model with its real weights; ``gpt2-tiny`` (2 x 64) and
``gpt2-shape`` (12 x 768) add points on the model-size axis. Thresholds are calibrated on
``--calibration-passages`` windows of real text (timing does not depend on them beyond the
spike counts).

With ``--context N`` the token is the (N+1)-th of a prompt: both sides first run the N-token
prefix with a KV cache (not timed), then the timed token attends to it. ``--profile T`` adds
a torch profiler table of the simulator at that T (where the time goes).
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from stac.frontend import ConversionConfig, convert, load_model
from stac.frontend.models import LoadedModel
from stac.frontend.text import evaluation_text, with_bos
from stac.sim.semantics import RunContext
from stac.sim.simulator import Simulator

from record import Record, recording

#: GPT-2 shapes with random weights (the hub's weights are not available offline).
GPT2_SHAPES = {
    "gpt2-tiny": {"n_layer": 2, "n_embd": 64, "n_head": 4},
    "distilgpt2-shape": {"n_layer": 6, "n_embd": 768, "n_head": 12},
    "gpt2-shape": {"n_layer": 12, "n_embd": 768, "n_head": 12},
}
MODELS = ("gpt2-tiny", "distilgpt2-shape", "gpt2-shape", "smollm2-135m")
DEFAULT_MODELS = ("distilgpt2-shape", "smollm2-135m")


@dataclass
class Row:
    model: str
    params_m: float
    steps: int
    float_ms: float
    sim_ms: float

    @property
    def ratio(self) -> float:
        return self.sim_ms / self.float_ms


def paired_median_ms(
    a: Callable[[], object], b: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median wall time of ``a`` and of ``b`` in ms, run alternately after one warm-up each.

    Alternating keeps both sides under the same machine load, so their ratio is fair even
    when other processes share the cores.
    """
    a(), b()  # warm-up: parameter tensors, allocator, kernels
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((a, times[0]), (b, times[1])):
            started = time.perf_counter()
            fn()
            out.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times[0]), statistics.median(times[1])


def load(name: str, workdir: Path) -> LoadedModel:
    if name == "smollm2-135m":
        return load_model(name)
    if name in GPT2_SHAPES:
        from transformers import GPT2Config, GPT2LMHeadModel

        tokenizer = load_model("smollm2-135m").tokenizer
        torch.manual_seed(0)
        config = GPT2Config(vocab_size=len(tokenizer), n_positions=1024, **GPT2_SHAPES[name])
        path = workdir / name
        GPT2LMHeadModel(config).save_pretrained(path)
        tokenizer.save_pretrained(path)
        return load_model(str(path))
    raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def prompt_ids(loaded: LoadedModel, context: int) -> torch.Tensor:
    """BOS + real text: ``context`` tokens of prefix and the timed token, ``[1, context+1]``."""
    ids = loaded.tokenizer(evaluation_text()[:4000], return_tensors="pt").input_ids[0]
    return with_bos(loaded.tokenizer, ids)[: context + 1][None]


def float_step(loaded: LoadedModel, ids: torch.Tensor) -> Callable[[], object]:
    model = loaded.model
    prefix, token = ids[:, :-1], ids[:, -1:]
    past = None
    with torch.no_grad():
        if prefix.shape[1]:
            past = model(prefix, use_cache=True).past_key_values

    def run() -> object:
        with torch.no_grad():
            cache = None
            if past is not None:  # a fresh copy: the model appends to the cache it is given
                cache = copy.deepcopy(past)
            return model(token, past_key_values=cache, use_cache=cache is not None).logits

    return run


def sim_step(sim: Simulator, ids: torch.Tensor, steps: int) -> Callable[[], object]:
    prefix, token = ids[:, :-1], ids[:, -1:]
    cache: dict = {}
    if prefix.shape[1]:
        ctx = RunContext(prefix, steps=steps, use_cache=True)
        sim.run(ctx)
        cache = ctx.kv_cache

    def run() -> object:
        return sim.run(RunContext(token, steps=steps, kv_cache=dict(cache)))

    return run


def profile_sim(sim: Simulator, ids: torch.Tensor, steps: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    run = sim_step(sim, ids, steps)
    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def main(record: Record) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timesteps", default="1,4,8,16,32")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated, from {', '.join(MODELS)}",
    )
    parser.add_argument("--context", type=int, default=0)
    parser.add_argument("--calibration-passages", type=int, default=2)
    parser.add_argument("--profile", type=int, default=None, metavar="T")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for both sides (default: torch's choice)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    steps_list = [int(t) for t in args.timesteps.split(",")]
    rows: list[Row] = []
    profiles: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            loaded = load(name, Path(tmp))
            params_m = sum(p.numel() for p in loaded.model.parameters()) / 1e6
            graph = convert(
                loaded,
                ConversionConfig(
                    timesteps=max(steps_list), calibration_passages=args.calibration_passages
                ),
            )
            sim = Simulator(graph)
            ids = prompt_ids(loaded, args.context)
            forward = float_step(loaded, ids)
            for steps in tqdm(steps_list, desc=name, unit="T", leave=False):
                float_ms, sim_ms = paired_median_ms(
                    forward, sim_step(sim, ids, steps), args.repeats
                )
                rows.append(Row(name, params_m, steps, float_ms, sim_ms))
            if args.profile:
                profiles[name] = profile_sim(sim, ids, args.profile)
    print(
        f"one token (context {args.context}), torch threads {torch.get_num_threads()}, "
        f"median of {args.repeats} runs; goal: simulator <= 2 x T float forward passes"
    )
    print(
        f"{'model':<18} {'params':>8} {'T':>4} {'float ms':>10} {'sim ms':>10} "
        f"{'sim/float':>10} {'2T':>5} {'vs goal':>9} {'ms per T':>9}"
    )
    for r in rows:
        verdict = f"{r.ratio / (2 * r.steps):.2f}x"
        print(
            f"{r.model:<18} {r.params_m:>7.1f}M {r.steps:>4} {r.float_ms:>10.2f} "
            f"{r.sim_ms:>10.2f} {r.ratio:>10.2f} {2 * r.steps:>5} {verdict:>9} "
            f"{r.sim_ms / r.steps:>9.2f}"
        )
    print("vs goal = (sim/float) / (2T): at most 1.00x meets the issue's target")
    record.data["context"] = args.context
    record.data["torch_threads"] = torch.get_num_threads()
    record.data["repeats"] = args.repeats
    record.data["rows"] = [
        {
            "model": r.model,
            "params_m": r.params_m,
            "timesteps": r.steps,
            "float_ms": r.float_ms,
            "sim_ms": r.sim_ms,
            "sim_over_float": r.ratio,
            "budget_2t": 2 * r.steps,
        }
        for r in rows
    ]
    for name, table in profiles.items():
        print(f"\nprofile of the simulator, {name}, T={args.profile}:\n{table}")


if __name__ == "__main__":
    with recording("sim_speed") as rec:
        main(rec)
