"""`stac finetune`: the differentiable forward, the training loop, checkpoints, the artifact."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stac.artifact import load_artifact
from stac.cli import main
from stac.commands.eval import run_eval
from stac.frontend.models import load_model
from stac.ir.graph import make_graph
from stac.ir.nodes import SignedIF
from stac.ir.passes.common import replace_fields
from stac.ir.results import legality_of
from stac.sim.neurons import signed_if_scan
from stac.sim.semantics import RunContext
from stac.sim.simulator import Simulator
from stac.train.finetune import FinetuneConfig, Trainer, text_windows
from stac.train.graphnet import GraphNet
from stac.train.surrogate import staircase_grad

T = 4


@pytest.fixture(scope="module")
def binary_artifact(tmp_path_factory, tiny_gpt2_dir):
    """The tiny GPT-2 in full mode with binary spikes at T = 4: a coarse code to win back."""
    out = tmp_path_factory.mktemp("ft") / "tiny-binary"
    args = ["compile", "--model", str(tiny_gpt2_dir), "--mode", "full", "--payload-bits", "1"]
    args += ["-T", str(T), "--calibration-passages", "1", "--output-dir", str(out)]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def rotated_artifact(tmp_path_factory, tiny_gpt2_dir):
    """The same with --rotate: host Rotation nodes, encoders with a step per token."""
    out = tmp_path_factory.mktemp("ft") / "tiny-rotated"
    args = ["compile", "--model", str(tiny_gpt2_dir), "--mode", "full", "--payload-bits", "1"]
    args += ["-T", str(T), "--calibration-passages", "1", "--output-dir", str(out), "--rotate"]
    assert main(args) == 0
    return out


def _trainer(artifact, tiny_gpt2_dir, text_file, **kw) -> Trainer:
    art = load_artifact(artifact)
    cfg = FinetuneConfig(**{"steps": 4, "lr": 3e-3, "batch": 2, "seq_len": 24, **kw})
    data = text_windows(art.tokenizer(), text_file.read_text(), cfg.seq_len)
    teacher = load_model(str(tiny_gpt2_dir)).model.eval()
    return Trainer(GraphNet(art.graph), teacher, data, cfg, T)


def test_surrogate_is_nonzero_where_the_forward_steps():
    """stac's scan jumps between two drives a hair apart; the surrogate's slope there is its
    closed-form peak, 1 / mean over a level of SuperSpike's 1/(1 + b|d|)^2."""
    theta, slope = torch.tensor([1.0]), 2.0
    edge = 0.5 * float(theta) / T  # u = T x / theta crosses 1/2: the first spike
    lo, hi = torch.tensor([edge - 1e-4]), torch.tensor([edge + 1e-4])
    out = [signed_if_scan(x, theta, T, False, 1, True).sum() for x in (lo, hi)]
    assert out[0] == 0 and out[1] == 1  # the forward is a step here
    u = torch.tensor([0.5], requires_grad=True)
    staircase_grad(u, cap=T, slope=slope).sum().backward()
    mean = (2 / slope) * (1 - 1 / (1 + slope / 2))
    assert u.grad is not None and float(u.grad) == pytest.approx(1 / mean)
    # Non-zero over the whole clamp range, zero past the last edge (the clip).
    u = torch.linspace(-T - 0.4, T + 0.4, 801, requires_grad=True)
    staircase_grad(u, cap=T, slope=slope).sum().backward()
    assert u.grad is not None and bool((u.grad > 0).all())
    far = torch.tensor([T + 1.0, -T - 1.0], requires_grad=True)
    staircase_grad(far, cap=T, slope=slope).sum().backward()
    assert far.grad is not None and bool((far.grad == 0).all())
    # Its value is zero: added to an exact spike train it changes nothing.
    assert bool((staircase_grad(u, cap=T) == 0).all())


@pytest.mark.parametrize("which", ["binary_artifact", "rotated_artifact"])
def test_forward_is_the_simulators_bit_for_bit(request, which):
    graph = load_artifact(request.getfixturevalue(which)).graph
    ids = torch.randint(0, 2000, (2, 12), generator=torch.Generator().manual_seed(1))
    ref, stats = Simulator(graph).run(RunContext(ids, steps=T))
    net = GraphNet(graph)
    logits, out = net(ids, T)
    assert torch.equal(logits, ref["output"])
    for name, counts in out.counts.items():
        assert int(counts.sum()) == stats[name].spikes
    # and it has a gradient, reaching weights and thresholds
    F.log_softmax(logits, -1).mean().backward()
    grads = {k: p.grad for k, p in net.params.items()}
    assert all(g is not None and float(g.abs().sum()) > 0 for g in grads.values())


def test_distillation_lowers_the_kl(binary_artifact, tiny_gpt2_dir, text_file):
    """Thresholds a quarter of the calibrated ones clip most values; a few steps of
    distillation win a large part of the KL back (measured: 0.0059 -> 0.0031 in 6 steps)."""
    art = load_artifact(binary_artifact)
    nodes = {
        k: replace_fields(v, threshold=(v.threshold * 0.25).astype(np.float32))
        if isinstance(v, SignedIF)
        else v
        for k, v in art.graph.nodes.items()
    }
    graph = make_graph(nodes, art.graph.edges, art.graph.metadata)
    cfg = FinetuneConfig(steps=6, lr=1e-5, threshold_lr=0.1, batch=2, seq_len=24)
    data = text_windows(art.tokenizer(), text_file.read_text(), cfg.seq_len)
    teacher = load_model(str(tiny_gpt2_dir)).model.eval()
    trainer = Trainer(GraphNet(graph), teacher, data, cfg, T)
    probe = trainer.data[:4]

    def kl() -> float:
        with torch.no_grad():
            return trainer.loss(probe)[1]["kl"]

    before = kl()
    trainer.run(6, text_file.parent / "run")
    after = kl()
    assert after < 0.75 * before, (before, after)
    losses = [h["loss"] for h in trainer.state.history]
    assert losses[-1] < losses[0]


def test_spike_l1_lowers_the_spike_count(binary_artifact, tiny_gpt2_dir, text_file):
    trainer = _trainer(
        binary_artifact, tiny_gpt2_dir, text_file, spike_l1=1.0, lr=1e-5, threshold_lr=0.05
    )
    probe = trainer.data[:4]
    with torch.no_grad():
        before = trainer.loss(probe)[1]["spikes_per_token"]
    trainer.run(4, text_file.parent / "l1")
    with torch.no_grad():
        after = trainer.loss(probe)[1]["spikes_per_token"]
    assert after < 0.9 * before, (before, after)


def test_resume_is_bit_identical(binary_artifact, tiny_gpt2_dir, text_file, tmp_path):
    whole = _trainer(binary_artifact, tiny_gpt2_dir, text_file, checkpoint_every=2)
    whole.run(4, tmp_path / "whole")
    half = _trainer(binary_artifact, tiny_gpt2_dir, text_file, checkpoint_every=2)
    half.run(2, tmp_path / "half")
    resumed = _trainer(binary_artifact, tiny_gpt2_dir, text_file, checkpoint_every=2)
    resumed.load(tmp_path / "half")
    assert resumed.state.step == 2
    resumed.run(4, tmp_path / "half")
    for (key, a), (_, b) in zip(whole.named, resumed.named, strict=True):
        assert torch.equal(a, b), key
    losses = [h["loss"] for h in whole.state.history]
    assert losses == [h["loss"] for h in resumed.state.history]


def test_command_writes_an_artifact_every_command_accepts(binary_artifact, text_file, tmp_path):
    out = tmp_path / "ft"
    args = ["finetune", str(binary_artifact), "--text", str(text_file), "--output-dir", str(out)]
    args += ["--steps", "2", "--lr", "3e-3", "--seq-len", "24", "--checkpoint-every", "1"]
    assert main(args) == 0
    for name in ("curves.png", "history.json", "finetune.json"):
        assert (out / name).is_file()
    assert sorted(p.name for p in (out / "checkpoints").glob("*.safetensors")) == [
        "step-0000001.safetensors",
        "step-0000002.safetensors",
    ]
    umask = os.umask(0)
    os.umask(umask)
    for f in (out / "checkpoints").iterdir():  # renamed into place with a file's usual mode
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f.name
    art = load_artifact(out / "artifact")
    legal = legality_of(art.graph)
    assert legal is not None and legal.errors == 0
    layers = art.graph.metadata["quantise"]["layers"]
    weights = [r for r in layers.values() if r.get("kind") == "weights"]
    assert weights and all(r["status"] == "carried" for r in weights)  # still on the 8-bit grid
    report = json.loads((out / "artifact" / "report.json").read_text())
    assert report["finetune"]["steps_done"] == 2
    doc = run_eval(out / "artifact", [T], text_file, window=24, max_tokens=46)
    assert doc["results"][0]["perplexity_ratio"] > 0
    # the trained weights moved, and the artifact holds them
    before = load_artifact(binary_artifact).graph.nodes["layer0_fc"].weight
    assert not (before == art.graph.nodes["layer0_fc"].weight).all()


@pytest.mark.parametrize("frozen", ["--lr", "--threshold-lr"])
def test_a_rate_of_zero_freezes_its_kind(binary_artifact, text_file, tmp_path, frozen):
    """``--threshold-lr 0`` trains the weights alone and ``--lr 0`` the thresholds alone: the
    frozen kind leaves the command exactly as it came in, the other moves."""
    out = tmp_path / "ft"
    args = ["finetune", str(binary_artifact), "--text", str(text_file), "--output-dir", str(out)]
    args += ["--steps", "3", "--lr", "3e-3", "--threshold-lr", "0.1", "--seq-len", "24"]
    args += [frozen, "0"]
    assert main(args) == 0
    before = load_artifact(binary_artifact).graph.nodes
    after = load_artifact(out / "artifact").graph.nodes
    encoders = [k for k, v in before.items() if isinstance(v, SignedIF)]
    weighted = [k for k, v in before.items() if getattr(v, "weight", None) is not None]
    weighted = [k for k in weighted if k in after and before[k].weight.ndim == 2]
    thresholds_equal = all(
        np.array_equal(before[k].threshold, after[k].threshold) for k in encoders
    )
    weights_equal = all(np.array_equal(before[k].weight, after[k].weight) for k in weighted)
    assert encoders and weighted
    assert thresholds_equal == (frozen == "--threshold-lr")
    assert weights_equal == (frozen == "--lr")


def test_all_rates_zero_is_refused(binary_artifact, text_file, tmp_path, capsys):
    args = ["finetune", str(binary_artifact), "--text", str(text_file), "--output-dir"]
    args += [str(tmp_path / "ft"), "--lr", "0", "--threshold-lr", "0"]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "nothing to train" in err and "Traceback" not in err
    assert not (tmp_path / "ft").exists()
