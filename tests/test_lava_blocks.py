"""Converted transformer blocks on the lava backend: real Lava against stac's fixed point, bit for
bit, over at least 100 steps, with real drives from real models; and whole converted models
through ``loihi2-lava`` against the reference simulator.

Blocks: SmolLM2-135M in full mode (graded onset-driven encoders, 8-bit weights, split into
channel groups) with the drives its own host ops compute on Hamlet, and the tiny GPT-2's
simplified-mode blocks (binary held-drive encoders). The gold arrays in tests/data/lava/ were
recorded from real Lava runs of two such blocks, with the block's integers and drive stored
beside them; ``.venv/bin/python tests/test_lava_blocks.py`` records them again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stac.backends import resolve_target
from stac.backends.lava.backend import lava_available, lava_format, run_block_lava
from stac.backends.lava.config import LavaLimits
from stac.backends.lava.host import first_difference
from stac.backends.lava.blocks import (
    ChannelGroup,
    DenseBlock,
    EncoderBlock,
    block_plan,
    readout_key,
    split_payload,
)
from stac.backends.lava.drive import decode, encode_drive
from stac.backends.lava.fixed import run_block_fixed
from stac.errors import StacError
from stac.ir.nodes import SignedIF
from stac.profiles import load_profile
from stac.sim.semantics import SEMANTICS, RunContext
from stac.sim.signal import Signal
from stac.sim.simulator import Simulator

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "tests" / "data" / "lava"
GOLD_BLOCKS = {"smollm2_full_o_proj": "layer2_o_proj_in", "gpt2_simplified_qkv": "layer0_qkv_in"}
needs_lava = pytest.mark.skipif(
    not lava_available(), reason="lava-nc is not installed (bash scripts/setup_lava.sh)"
)
PROFILE = load_profile("loihi2")
FMT = lava_format(PROFILE)
LIMITS = LavaLimits.from_profile(PROFILE)


def drives(graph, plan, ids: torch.Tensor, steps: int) -> dict[str, np.ndarray]:
    """Each encoder's per-token drive ``[tokens, n]`` when the reference simulator runs ``ids``
    (recorded by overriding the encoders with their own semantics)."""
    seen: dict[str, np.ndarray] = {}

    def record(node, inp, ctx, name, need):
        seen[name] = inp.mean().reshape(-1, node.threshold.size).numpy().copy()
        return SEMANTICS[SignedIF](node, inp, ctx, name, need)

    Simulator(graph, {n: record for n in plan.blocks}).run(RunContext(ids, steps=steps))
    return seen


@pytest.fixture(scope="module")
def smollm2_full(smollm2, hamlet_ids):
    """SmolLM2 converted in full mode at T = 16 and quantised for loihi2; its block plan; and
    every encoder's drive on 8 tokens of Hamlet (8 x 16 + 1 = 129 Lava steps per block)."""
    from stac.frontend import ConversionConfig, convert
    from stac.ir.passes import run_passes

    graph = run_passes(
        convert(smollm2, ConversionConfig(mode="full", timesteps=16, calibration_passages=1)),
        PROFILE,
    )
    plan = block_plan(graph, FMT, 16, LIMITS)
    ids = hamlet_ids[200:208][None]
    return graph, plan, drives(graph, plan, ids, 16)


@pytest.fixture(scope="module")
def tiny_gpt2(tiny_gpt2_artifact, smollm2):
    """The tiny GPT-2 artifact (simplified mode, T = 4, quantised for loihi2), its plan, and
    its drives on 32 tokens (129 Lava steps)."""
    from stac.artifact import load_artifact
    from stac.frontend.text import play_text

    graph = load_artifact(tiny_gpt2_artifact).graph
    plan = block_plan(graph, FMT, 4, LIMITS)
    ids = smollm2.tokenizer(play_text("tragedies/macbeth")[:4000], return_tensors="pt").input_ids[
        :, :32
    ]
    return graph, plan, drives(graph, plan, ids, 4)


# --- the plan ----------------------------------------------------------------------------------


def test_every_encoder_of_a_converted_model_becomes_a_block(smollm2_full, tiny_gpt2):
    for graph, plan, _ in (smollm2_full, tiny_gpt2):
        encoders = {n for n, v in graph.nodes.items() if isinstance(v, SignedIF)}
        assert set(plan.blocks) == encoders
        for block in plan.blocks.values():
            # channel c's threshold is mult_c * factor units of one shared unit
            m = np.zeros(block.size)
            for g in block.groups:
                m[g.index] = g.mult * g.factor
            ratio = block.threshold.astype(np.float64) / m
            assert np.allclose(ratio, ratio[0], rtol=1e-6)
            assert block.payload_bits <= 32
            for d in block.dense:  # doubled 8-bit weights, even, as Lava keeps mixed ones
                assert np.all(d.weights % 2 == 0) and np.abs(d.weights).max() <= 254
    full = smollm2_full[1].blocks
    assert all(b.onset and b.chip_theta == 1 for b in full.values())
    assert max(len(b.groups) for b in full.values()) > 4  # thresholds spread over 2**k
    tiny = tiny_gpt2[1].blocks
    assert all(not b.onset and b.max_payload == 1 and len(b.groups) == 1 for b in tiny.values())


# --- Lava against stac, bit for bit --------------------------------------------------------------


def _run_both(block, x, steps):
    drive = encode_drive(block, x, steps, FMT)
    return (
        drive,
        run_block_lava(block, drive.steps, steps, FMT),
        run_block_fixed(block, drive.steps, steps, FMT),
    )


@needs_lava
@pytest.mark.parametrize("name", ["layer0_qkv_in", "layer7_down_in", "lm_head_in"])
# layer0_qkv_in: 12 channel groups; layer7_down_in: 1536 channels; lm_head_in: 49152 outputs
def test_smollm2_full_mode_blocks_in_lava_equal_stac_bit_for_bit(smollm2_full, name):
    graph, plan, seen = smollm2_full
    block, x = plan.blocks[name], seen[name]
    if name == "lm_head_in":  # 49152 outputs: 24 channels of its largest group keep it short
        keep = max(block.groups, key=lambda g: g.index.size).index[:24]
        block = EncoderBlock(
            name,
            block.threshold[keep],
            1,
            [ChannelGroup(np.arange(24), np.ones(24, np.int64), 1)],
            block.max_payload,
            True,
            False,
            [DenseBlock(d.name, d.weights[:, keep], -1, d.scale, None) for d in block.dense],
        )
        x = x[:, keep]
    drive, lava, fixed = _run_both(block, x, 16)
    assert lava.v.shape[0] == 8 * 16 + 1 >= 100
    assert first_difference(lava, fixed) is None
    assert (
        set(lava.sigma)
        == set(fixed.sigma)
        == {readout_key(d.name, i) for d in block.dense for i in range(len(block.groups))}
    )
    # not vacuous: real graded payloads, potentials left after draining, readouts that move
    assert np.count_nonzero(lava.payload) > block.size and np.abs(lava.payload).max() > 1
    if np.abs(drive.steps).max() > block.max_payload:  # drained over several steps
        assert np.count_nonzero(lava.v) > 0
    assert all(np.count_nonzero(s) > s.size // 2 for s in lava.sigma.values())


@needs_lava
@pytest.mark.parametrize("name", ["layer0_qkv_in", "layer1_down_in"])
def test_simplified_mode_blocks_in_lava_equal_stac_bit_for_bit(tiny_gpt2, name):
    _, plan, seen = tiny_gpt2
    block = plan.blocks[name]
    drive, lava, fixed = _run_both(block, seen[name], 4)
    assert lava.v.shape[0] == 32 * 4 + 1 >= 100
    assert first_difference(lava, fixed) is None
    assert set(np.unique(lava.payload // block.mult()[None])) <= {-1, 0, 1}
    assert 0.02 < np.count_nonzero(lava.payload) / lava.payload.size < 0.98


def test_split_payloads_are_exact_digits():
    s = np.array([-(2**23) - 5, -1, 0, 1, 2**11 - 1, 2**11, 2**23 + 12345])
    for bits, parts in ((11, 3), (4, 4), (12, 2)):
        digits = split_payload(s, bits, parts)
        assert np.array_equal(sum(d << (j * bits) for j, d in enumerate(digits)), s)
        assert all(((d >= 0) & (d < 2**bits)).all() for d in digits[:-1])


@needs_lava
def test_a_payload_split_into_parts_is_bit_exact_and_decodes_to_the_same_output(smollm2_full):
    """A block whose readouts could pass Lava's 32 bits sends each payload as parts (one
    encoder port each, with their own synapses and readouts); forced here on a real block."""
    graph, plan, seen = smollm2_full
    whole = plan.blocks["layer0_o_proj_in"]
    split = EncoderBlock(**{**vars(whole), "split_bits": 4, "parts": 3})
    drive = encode_drive(split, seen["layer0_o_proj_in"], 16, FMT)
    lava = run_block_lava(split, drive.steps, 16, FMT)
    fixed = run_block_fixed(split, drive.steps, 16, FMT)
    assert first_difference(lava, fixed) is None
    assert len(lava.sigma) == 3 * len(split.groups)
    reference = run_block_fixed(whole, drive.steps, 16, FMT)
    assert np.array_equal(lava.payload, reference.payload)
    d = whole.dense[0]
    assert np.array_equal(
        decode(split, d, lava, 8, drive.gain, 16), decode(whole, d, reference, 8, drive.gain, 16)
    )


def test_the_chip_integers_reproduce_the_float_reference_of_each_block(smollm2_full, tiny_gpt2):
    """The decoded readouts equal the reference simulator's SignedIF + Linear on the same drive
    up to float rounding: the integer blocks are the converted model, not an approximation."""
    for (graph, plan, seen), steps in ((smollm2_full, 16), (tiny_gpt2, 4)):
        for name in list(plan.blocks)[:6] + ["lm_head_in"]:
            block = plan.blocks[name]
            drive = encode_drive(block, seen[name], steps, FMT)
            fixed = run_block_fixed(block, drive.steps, steps, FMT)
            ctx = RunContext(torch.zeros(1, len(seen[name]), dtype=torch.long), steps=steps)
            ref, _ = SEMANTICS[SignedIF](
                graph.nodes[name],
                Signal(torch.as_tensor(seen[name])[None], False),
                ctx,
                name,
                False,
            )
            for d in block.dense:
                want, _ = SEMANTICS[type(graph.nodes[d.name])](
                    graph.nodes[d.name], ref, ctx, d.name, False
                )
                got = decode(block, d, fixed, len(seen[name]), drive.gain, steps)
                err = np.linalg.norm(got - want.mean()[0].numpy()) / np.linalg.norm(want.mean())
                assert err < 1e-5, (name, err)


# --- gold arrays recorded from Lava --------------------------------------------------------------


def _load_gold(key: str) -> tuple[EncoderBlock, np.ndarray, int, dict[str, np.ndarray]]:
    data = np.load(GOLD / f"block_{key}.npz")
    groups = [
        ChannelGroup(data[f"group{i}_index"], data[f"group{i}_mult"], int(data["factors"][i]))
        for i in range(len(data["factors"]))
    ]
    block = EncoderBlock(
        key,
        data["threshold"],
        int(data["chip_theta"]),
        groups,
        int(data["max_payload"]),
        bool(data["onset"]),
        False,
        [DenseBlock("map", data["weights"].astype(np.int64), -1, data["scale"], None)],
    )
    expect = {k: data[k] for k in data.files if k in ("v", "payload") or k.startswith("map#")}
    return block, data["drive"], int(data["steps"]), expect


@pytest.mark.parametrize("key", sorted(GOLD_BLOCKS))
def test_stac_fixed_point_matches_the_recorded_lava_gold(key):
    block, drive, steps, expect = _load_gold(key)
    fixed = run_block_fixed(block, drive, steps, FMT)
    assert drive.shape[0] >= 100
    assert np.array_equal(fixed.v, expect["v"])
    assert np.array_equal(fixed.payload, expect["payload"])
    for k, s in fixed.sigma.items():
        assert np.array_equal(s, expect[k]), k


@needs_lava
@pytest.mark.parametrize("key", sorted(GOLD_BLOCKS))
def test_lava_still_reproduces_its_gold(key):
    block, drive, steps, expect = _load_gold(key)
    lava = run_block_lava(block, drive, steps, FMT)
    assert np.array_equal(lava.v, expect["v"]) and np.array_equal(lava.payload, expect["payload"])
    assert all(np.array_equal(s, expect[k]) for k, s in lava.sigma.items())


# --- a whole converted model through the target ------------------------------------------------


def _lava_and_reference(graph):
    """``graph`` on 8 tokens at T = 4 through ``loihi2-lava`` and ``loihi2-sim``; asserts the
    logits agree to 1e-5 and returns (Lava lowering, its summary, Lava's and the reference's
    node stats)."""
    profile, lava_backend = resolve_target("loihi2-lava")
    _, sim_backend = resolve_target("loihi2-sim")
    ids = torch.tensor([[1, 504, 2717, 314, 260, 3500, 28, 216]])
    lowered = lava_backend.lower(graph, profile)
    out, stats = lava_backend.run(lowered, RunContext(ids, steps=4))
    want, want_stats = sim_backend.run(sim_backend.lower(graph, profile), RunContext(ids, steps=4))
    diff = (out["output"] - want["output"]).abs().max() / want["output"].abs().max()
    assert diff < 1e-5
    return lowered, lava_backend.summary(lowered), stats, want_stats


@needs_lava
def test_a_converted_model_runs_through_loihi2_lava_like_the_reference_simulator(tiny_gpt2):
    graph, _, _ = tiny_gpt2
    lowered, summary, stats, want_stats = _lava_and_reference(graph)
    assert summary["blocks_run"] == len(lowered.plan.blocks) == 9 and summary["bit_exact"]
    assert all(b["steps"] == 8 * 4 + 1 for b in summary["blocks"])
    for name in lowered.plan.blocks:  # the counts the report prices are the reference's
        assert stats[name].spikes == want_stats[name].spikes > 0
        for d in lowered.plan.blocks[name].dense:
            assert stats[d.name].synops == want_stats[d.name].synops


@needs_lava
def test_rotated_binary_encoders_run_through_loihi2_lava_like_the_reference(
    tmp_path, tiny_llama_dir
):
    """--rotate (host Rotation nodes, binary encoders whose per-token gain has no floor) in
    real Lava: bit-exact with stac's fixed point, logits as the reference simulator's."""
    from stac.artifact import load_artifact
    from stac.commands.compile import CompileRequest, compile_model
    from stac.frontend import ConversionConfig

    conversion = ConversionConfig(
        mode="full", timesteps=4, calibration_passages=1, payload_bits=1, rotate=True
    )
    compile_model(CompileRequest(str(tiny_llama_dir), "loihi2-sim", tmp_path / "a", conversion))
    lowered, summary, _, _ = _lava_and_reference(load_artifact(tmp_path / "a").graph)
    assert summary["bit_exact"] and summary["blocks_run"] == 9
    assert all(b.gain_floor == 0.0 and b.token_gain for b in lowered.plan.blocks.values())


@needs_lava
def test_stac_compile_on_loihi2_lava_reports_the_lava_run(tmp_path, tiny_gpt2_dir):
    import json

    from stac.cli import main

    out = tmp_path / "lava"
    assert (
        main(
            [
                "compile",
                "--model",
                str(tiny_gpt2_dir),
                "--target",
                "loihi2-lava",
                "-T",
                "4",
                "--calibration-passages",
                "1",
                "--prompt",
                "To be, or not to be",
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    run = report["backend_run"]
    assert run["backend"] == "lava" and run["bit_exact"] and run["blocks_run"] == 9
    assert run["max_rel_rms_vs_float"] < 1e-5
    assert report["total"]["spikes"] > 0
    assert "## Lava run" in (out / "report.md").read_text()


# --- bad input -----------------------------------------------------------------------------------


def test_chip_nodes_outside_blocks_are_refused_by_name(tiny_gpt2):
    from stac.ir.graph import make_graph

    graph, _, _ = tiny_gpt2
    edges = [(s, d) for s, d in graph.edges if d != "layer0_fc"]
    edges.append(("layer0_mlp_norm", "layer0_fc"))  # a map fed by a host op, no encoder
    edges = [(s, d) for s, d in edges if s != "layer0_fc_in"]
    odd = make_graph(graph.nodes, edges, graph.metadata)
    profile, backend = resolve_target("loihi2-lava")
    with pytest.raises(StacError, match="cannot emit 2 chip node") as err:
        backend.lower(odd, profile)
    assert "layer0_fc (Affine): fed by ['layer0_mlp_norm']" in str(err.value)
    assert "layer0_fc_in (SignedIF): feeds nothing" in str(err.value)


def test_an_unquantised_converted_graph_is_refused_by_name(smollm2):
    from stac.frontend import ConversionConfig, convert

    graph = convert(smollm2, ConversionConfig(timesteps=4, calibration_passages=1))
    with pytest.raises(StacError, match="no per-row weight scale") as err:
        block_plan(graph, FMT, 4, LIMITS)
    assert "layer0_qkv:" in str(err.value)


# --- recording the gold arrays -------------------------------------------------------------------


def record() -> None:  # pragma: no cover - run by hand
    """Record the gold arrays from real Lava runs of two real blocks."""
    import sys
    import tempfile

    from stac.frontend import ConversionConfig, convert, load_model
    from stac.frontend.text import play_text
    from stac.ir.passes import run_passes

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import _gpt2

    smol = load_model("smollm2-135m")
    ids = smol.tokenizer(play_text("tragedies/hamlet"), return_tensors="pt").input_ids[0]
    full = run_passes(
        convert(smol, ConversionConfig(mode="full", timesteps=16, calibration_passages=1)), PROFILE
    )
    tiny_dir = _gpt2(Path(tempfile.mkdtemp()), smol.tokenizer, n_layer=2, n_embd=64, n_head=4)
    tiny = run_passes(
        convert(load_model(str(tiny_dir)), ConversionConfig(timesteps=4, calibration_passages=1)),
        PROFILE,
    )
    for key, (graph, steps, tokens) in {
        "smollm2_full_o_proj": (full, 16, ids[200:208]),
        "gpt2_simplified_qkv": (tiny, 4, ids[300:332]),
    }.items():
        plan = block_plan(graph, FMT, steps, LIMITS)
        name = GOLD_BLOCKS[key]
        block = plan.blocks[name]
        drive = encode_drive(block, drives(graph, plan, tokens[None], steps)[name], steps, FMT)
        lava = run_block_lava(block, drive.steps, steps, FMT)
        dense = block.dense[0]
        arrays = {
            "threshold": block.threshold,
            "chip_theta": block.chip_theta,
            "max_payload": block.max_payload,
            "onset": block.onset,
            "steps": steps,
            "weights": dense.weights.astype(np.int16),
            "scale": dense.scale,
            "factors": np.array([g.factor for g in block.groups]),
            "drive": drive.steps,
            "v": lava.v,
            "payload": lava.payload,
        }
        for i, g in enumerate(block.groups):
            arrays[f"group{i}_index"], arrays[f"group{i}_mult"] = g.index, g.mult
            arrays[f"map#{i}"] = lava.sigma[readout_key(dense.name, i)]
        np.savez_compressed(GOLD / f"block_{key}.npz", **arrays)
        print(f"recorded {key}: {name}, {drive.steps.shape[0]} steps, {len(block.groups)} groups")


if __name__ == "__main__":
    record()
