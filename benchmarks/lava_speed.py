"""stac's fixed-point simulation against Lava (fixed_pt, CPU) on the same block, side by side.

    .venv/bin/python benchmarks/lava_speed.py [--sizes 100,1000] [--steps 200] [--repeats 3]

Each block is an Input of N binary spike channels (Bernoulli, rate 0.2), a Dense N x N with
random mixed-sign 8-bit weights and an N-neuron LIF: one :class:`LoihiPlan`, run by
``run_plan_lava`` (Lava processes with ``Loihi2SimCfg(select_tag="fixed_pt")``, ``RunSteps``,
monitors on v, u and spikes) and by ``run_plan_fixed`` (stac's bit-accurate torch steps), in
one process, alternately, each the median of ``--repeats`` runs. Lava's time includes building
the processes, its compiler and runtime start-up and reading the monitors back, which is what
a user of the backend waits for; the "bit-exact" column checks spikes, v and u agree. The NIR
paper's one-neuron LIF graph (1000 steps, tests/data/nir_paper) is added.

Converted transformer blocks (``--blocks``, default two of SmolLM2-135M's in full mode and one
in simplified mode, T = 16): the encoder, its graded Dense / Sparse synapses and Sigma
readouts, driven by what the model's own host ops compute on 8 tokens of Hamlet (129 steps);
``run_block_lava`` against ``run_block_fixed``, bit-exact in potentials, payloads and readouts.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from stac.backends.lava.backend import lava_available, lava_format, run_block_lava, run_plan_lava
from stac.backends.lava.config import LavaLimits
from stac.backends.lava.host import first_difference
from stac.backends.lava.blocks import block_plan
from stac.backends.lava.drive import encode_drive
from stac.backends.lava.fixed import run_block_fixed
from stac.backends.lava.fixed import run_plan_fixed
from stac.backends.lava.plan import DenseLayer, LIFLayer, LoihiPlan, plan_from_graph
from stac.ir.nir_io import read_nir
from stac.profiles import load_profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from paths import NIR_PAPER  # noqa: E402  (tests/paths.py: the vendored reference data)
from record import Record, recording  # noqa: E402

NIR_LIF = NIR_PAPER / "01_lif"


def block(n: int, steps: int, fmt: Any) -> tuple[LoihiPlan, np.ndarray]:
    rng = np.random.default_rng(n)
    w = rng.integers(-255, 256, (n, n))
    exp = -max(0, int(np.ceil(np.log2(np.abs(w).sum(axis=1).max() / 2**15))) + 1)
    plan = LoihiPlan(
        {"in": n},
        {"w": DenseLayer(w, exp, "in")},
        {
            "lif": LIFLayer(
                n, 2048, 256, 400, rng.integers(-50, 50, n), np.zeros(n, np.int64), ["w"]
            )
        },
        {"out": "lif"},
        fmt,
    )
    return plan, (rng.random((steps, n)) < 0.2).astype(np.int64)


def nir_paper_lif(fmt: Any) -> tuple[LoihiPlan, np.ndarray]:
    plan = plan_from_graph(read_nir(NIR_LIF / "lif_norse.nir", dt=1e-4), fmt)
    rows = np.loadtxt(NIR_LIF / "lif_lava_cpu_fixed.csv", delimiter=",")
    return plan, rows[:, :1].astype(np.int64)


def converted_blocks(spec: str, fmt: Any) -> list[tuple[str, int, Callable, Callable, Callable]]:
    """``mode:encoder`` pairs of SmolLM2 as (name, steps, stac run, Lava run, bit-exact check)."""
    from stac.frontend import ConversionConfig, convert, load_model
    from stac.frontend.text import play_text
    from stac.ir.passes import run_passes
    from stac.ir.nodes import SignedIF
    from stac.sim.semantics import SEMANTICS, RunContext
    from stac.sim.simulator import Simulator

    model = load_model("smollm2-135m")
    ids = model.tokenizer(play_text("tragedies/hamlet")[:4000], return_tensors="pt").input_ids[
        :, 200:208
    ]
    wanted: dict[str, list[str]] = {}
    for item in spec.split(","):
        mode, name = item.split(":")
        wanted.setdefault(mode, []).append(name)
    out = []
    for mode, names in wanted.items():
        graph = run_passes(
            convert(model, ConversionConfig(mode=mode, timesteps=16, calibration_passages=1)),
            load_profile("loihi2"),
        )
        plan = block_plan(graph, fmt, 16, LavaLimits.from_profile(load_profile("loihi2")))
        seen: dict[str, np.ndarray] = {}

        def record(node, inp, ctx, name, need, seen=seen):
            seen[name] = inp.mean().reshape(-1, node.threshold.size).numpy().copy()
            return SEMANTICS[SignedIF](node, inp, ctx, name, need)

        Simulator(graph, {n: record for n in names}).run(RunContext(ids, steps=16))
        for name in names:
            blk = plan.blocks[name]
            drive = encode_drive(blk, seen[name], 16, fmt).steps
            outs = sum(d.out_features for d in blk.dense)
            label = f"{mode} {name} {blk.size}->{outs} ({len(blk.groups)} gr)"
            out.append(
                (
                    label,
                    drive.shape[0],
                    lambda b=blk, d=drive: run_block_fixed(b, d, 16, fmt),
                    lambda b=blk, d=drive: run_block_lava(b, d, 16, fmt),
                    lambda a, b: first_difference(a, b) is None,
                )
            )
    return out


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def same(a: dict[str, dict[str, np.ndarray]], b: dict[str, dict[str, np.ndarray]]) -> bool:
    return all(np.array_equal(a[n][k], b[n][k]) for n in b for k in ("spikes", "v", "u"))


def main(record: Record) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--blocks",
        default="full:layer0_qkv_in,full:layer3_down_in,simplified:layer3_o_proj_in",
        help="converted SmolLM2 blocks as mode:encoder ('' for none)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not lava_available():
        raise SystemExit("lava-nc is not installed: bash scripts/setup_lava.sh")
    fmt = lava_format(load_profile("loihi2"))
    cases = []
    for n in args.sizes.split(","):
        plan, spikes = block(int(n), args.steps, fmt)
        cases.append(
            (
                f"Dense+LIF N={n}",
                spikes.shape[0],
                lambda p=plan, x=spikes: run_plan_fixed(p, x),
                lambda p=plan, x=spikes: run_plan_lava(p, x).traces,
                same,
            )
        )
    plan, spikes = nir_paper_lif(fmt)
    cases.append(
        (
            "NIR paper LIF (lif_norse.nir)",
            spikes.shape[0],
            lambda p=plan, x=spikes: run_plan_fixed(p, x),
            lambda p=plan, x=spikes: run_plan_lava(p, x).traces,
            same,
        )
    )
    if args.blocks:
        cases += converted_blocks(args.blocks, fmt)
    rows = []
    for name, steps, run_stac, run_lava, check in tqdm(cases, desc="blocks"):
        t_stac, t_lava, exact = [], [], True
        for _ in range(args.repeats):
            ts, fixed = timed(run_stac)
            tl, lava = timed(run_lava)
            t_stac.append(ts)
            t_lava.append(tl)
            exact &= check(lava, fixed)
        s, lv = statistics.median(t_stac), statistics.median(t_lava)
        rows.append((name, steps, s, lv, exact))
    print(
        f"\n{'block':44} {'steps':>6} {'stac s':>8} {'Lava s':>8} {'stac steps/s':>13} "
        f"{'Lava steps/s':>13} {'Lava/stac':>9} {'bit-exact':>9}"
    )
    for name, steps, s, lv, exact in rows:
        print(
            f"{name:44} {steps:>6} {s:>8.3f} {lv:>8.3f} {steps / s:>13.0f} {steps / lv:>13.0f} "
            f"{lv / s:>9.1f} {'yes' if exact else 'NO':>9}"
        )
    record.data["repeats"] = args.repeats
    record.data["rows"] = [
        {
            "block": name,
            "steps": steps,
            "stac_s": s,
            "lava_s": lv,
            "lava_over_stac": lv / s,
            "bit_exact": bool(exact),
        }
        for name, steps, s, lv, exact in rows
    ]


if __name__ == "__main__":
    with recording("lava_speed") as rec:
        main(rec)
