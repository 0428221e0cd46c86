"""`--rotate`: a host Hadamard rotation in front of every binary encoder, one step per token.

References: scipy's Sylvester Hadamard matrix for the rotation; the transformers Llama forward
(holding the artifact's weights, rotated back) for the rotated graph with spiking off; the
closed-form (2T+1)-level quantiser with the step ``clip * max|z| / T`` for each encoder.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from llama_weights import copy_maps

from stac.artifact import load_artifact
from stac.cli import main
from stac.eval import evaluate, float_logits, windows
from stac.frontend.models import load_model
from stac.ir.nodes import Rotation, SignedIF
from stac.sim.semantics import SEMANTICS, RunContext, rotate
from stac.sim.simulator import Simulator

T = 4


@pytest.fixture(scope="module")
def rotated(tmp_path_factory, tiny_llama_dir):
    """The tiny Llama (widths 64 and 160 = 5 x 32) in binary full mode with --rotate, T = 4."""
    from stac.commands.compile import CompileRequest, compile_model
    from stac.frontend import ConversionConfig

    out = tmp_path_factory.mktemp("rotated") / "artifact"
    conversion = ConversionConfig(
        mode="full", timesteps=T, calibration_passages=1, payload_bits=1, rotate=True
    )
    compile_model(CompileRequest(str(tiny_llama_dir), "loihi2-sim", out, conversion))
    return load_artifact(out)


@pytest.mark.parametrize("size", [1, 8, 12, 160, 576])
def test_rotation_is_a_randomised_hadamard(size):
    """``x R`` as the simulator computes it equals x times ``diag(signs) (mix kron H_b)``
    built from scipy's Hadamard matrix, and R is orthogonal."""
    node = Rotation.random(size, np.random.default_rng(size))
    b = size & -size
    assert node.block == b and node.mix.shape == (size // b, size // b)
    ref = np.diag(node.signs.astype(np.float64)) @ np.kron(
        node.mix.astype(np.float64), scipy.linalg.hadamard(b) / np.sqrt(b)
    )
    np.testing.assert_allclose(node.matrix(), ref, atol=1e-12)
    np.testing.assert_allclose(ref @ ref.T, np.eye(size), atol=1e-6)
    x = torch.randn(2, 3, size, dtype=torch.float64)
    got = rotate(node, x, lambda a: torch.as_tensor(np.asarray(a, np.float64)))
    np.testing.assert_allclose(got.numpy(), x.numpy() @ ref, atol=1e-12)


@pytest.mark.parametrize(
    "signs, mix, says",
    [
        (np.array([1.0, 0.5]), np.eye(1), "signs"),
        (np.ones(6), np.eye(2), "power of two"),  # 6 / 2 = 3
        (np.ones(4), np.array([[1.0, 1.0], [0.0, 1.0]]), "not orthogonal"),
    ],
)
def test_a_malformed_rotation_is_refused(signs, mix, says):
    with pytest.raises(ValueError, match=says):
        Rotation(signs, mix)


def rot_name(encoder: str) -> str:
    return encoder.removesuffix("_in") + "_rotate"


def _unrotated(graph, name: str) -> torch.Tensor:
    """Map ``name``'s weight as the float model reads it: ``(W R) R^T``."""
    r = graph.nodes[f"{name}_rotate"].matrix()
    return torch.from_numpy(np.asarray(graph.nodes[name].weight, np.float64) @ r.T).float()


def test_rotated_graph_without_spikes_is_the_llama_with_its_weights(
    rotated, tiny_llama_dir, hamlet_ids
):
    """Every map reads a rotated input and holds W R. With spiking off, the graph equals the
    transformers Llama holding the artifact's weights rotated back."""
    graph = rotated.graph
    rotations = [k for k, v in graph.nodes.items() if isinstance(v, Rotation)]
    encoders = [k for k, v in graph.nodes.items() if isinstance(v, SignedIF)]
    assert sorted(rotations) == sorted(rot_name(k) for k in encoders)
    model = load_model(str(tiny_llama_dir)).model.eval()
    copy_maps(model, lambda name: _unrotated(graph, name))
    chunks = windows(rotated.tokenizer(), hamlet_ids, 32, 3)
    r = evaluate(graph, chunks, [T], float_logits(model, chunks), spiking=False)[0]
    assert r.top1_agreement == 1.0
    assert abs(r.perplexity_ratio - 1.0) < 1e-4 and abs(r.mean_kl) < 1e-7


def test_each_rotated_encoder_has_one_step_per_token(rotated, hamlet_ids):
    """A rotated encoder's T-step output is ``clip(floor(z / s + 1/2), -T, T) s`` with
    ``s = 0.9 max_c |z_c| / T`` for each token's rotated drive z (binary spikes, one per step
    at most), so the token's largest value saturates at T; the rotation's host work is
    ``n log2 b`` additions, n sign flips and ``n m`` multiply-adds per token."""
    graph = rotated.graph
    seen, stats_of = {}, {}

    def record(node, inp, ctx, name, need):
        out, stats = SEMANTICS[type(node)](node, inp, ctx, name, need)
        seen[name], stats_of[name] = out, stats
        return out, stats

    ids = hamlet_ids[None, 100:140]
    Simulator(graph, dict.fromkeys(graph.nodes, record)).run(RunContext(ids, steps=T))
    for enc in ("layer0_qkv_in", "layer1_down_in", "lm_head_in"):
        node = graph.nodes[enc]
        assert node.token_gain and node.gain_floor == 0.0 and node.gain_ratio == 0.9
        assert node.max_payload == 1 and np.all(node.threshold == 1.0)
        z = seen[rot_name(enc)].mean().double().numpy()[0]
        s = 0.9 * np.abs(z).max(-1, keepdims=True) / T
        level = np.clip(np.floor(z / s + 0.5), -T, T)
        got = seen[enc].mean().double().numpy()[0]
        np.testing.assert_allclose(got, level * s, rtol=1e-5, atol=1e-6 * s.max())
        assert np.all(np.abs(level).max(-1) == T)
        rot = graph.nodes[rot_name(enc)]
        n, m, b = rot.size, rot.mix.shape[0], rot.block
        assert stats_of[rot_name(enc)].host_macs == ids.numel() * n * m
        assert stats_of[rot_name(enc)].host_flops == ids.numel() * n * (1 + int(np.log2(b)))


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--mode", "full"], "--rotate needs --mode full with binary spikes"),
        (["--mode", "simplified"], "apply to --mode full only"),
        (["--mode", "full", "--payload-bits", "1", "--token-gain"], "no --token-gain"),
        (["--mode", "full", "--payload-bits", "1", "--readout-bits", "24"], "do not combine"),
    ],
)
def test_rotate_outside_binary_full_mode_is_one_clear_error(
    tiny_llama_dir, tmp_path, capsys, extra, says
):
    out = tmp_path / "art"
    argv = ["compile", "--model", str(tiny_llama_dir), "--output-dir", str(out), "--rotate"]
    assert main([*argv, *extra]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]
    assert not out.exists()


def test_rotate_clip_without_rotate_is_refused(tiny_llama_dir, tmp_path, capsys):
    argv = ["compile", "--model", str(tiny_llama_dir), "--output-dir", str(tmp_path / "a")]
    assert main([*argv, "--mode", "full", "--rotate-clip", "0.8"]) != 0
    assert "--rotate-clip applies with --rotate only" in capsys.readouterr().err
