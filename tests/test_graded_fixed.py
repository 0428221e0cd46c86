"""stac's fixed-point host ops on chip against Lava's own graded PyProcModels, bit for bit.

Lava (lava-nc 0.10.0, ``Loihi2SimCfg(select_tag="fixed_pt")``) runs ``GradedVec``
(``PyGradedVecModelFixed``), ``NormVecDelay`` (``NormVecDelayModel``) and ``InvSqrt``
(``InvSqrtModelFP``) on random integer vectors fed by ``RingBuffer`` sources; stac's
:mod:`stac.sim.graded_fixed` functions must give the same integers. Then the composed RMSNorm
against its closed form, and a tiny Llama evaluated with the moved host ops in fixed point
against the float run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from stac.backends.lava.backend import lava_available
from stac.sim.graded_fixed import (
    graded_vec,
    inv_sqrt,
    loihi2_round,
    norm_product,
    norm_scale,
    norm_square,
    rms_norm_fixed,
)

needs_lava = pytest.mark.skipif(not lava_available(), reason="lava-nc is not installed")
TOP = 2**23 - 1  # 24-bit signed


def _run(procs: dict[str, Any], sources: dict[str, np.ndarray], sinks: dict[str, Any], steps: int):
    """Connect RingBuffer sources to ``procs`` ports, sinks to their outputs, run ``steps`` in
    fixed point; return each sink's data ``[n, steps]`` as int64."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    for port, data in sources.items():
        Source(data=data).s_out.connect(_port(procs, port))
    readers = {}
    for name, port in sinks.items():
        out = _port(procs, port)
        readers[name] = Sink(shape=out.shape, buffer=steps)
        out.connect(readers[name].a_in)
    first = next(iter(procs.values()))
    first.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    try:
        return {k: np.rint(r.data.get()).astype(np.int64) for k, r in readers.items()}
    finally:
        first.stop()


def _port(procs: dict[str, Any], path: str) -> Any:
    proc, port = path.split(".")
    return getattr(procs[proc], port)


@needs_lava
def test_graded_vec_matches_lava() -> None:
    from lava.proc.graded.process import GradedVec

    rng = np.random.default_rng(1)
    n, steps, vth = 16, 12, 3000
    a = rng.integers(-TOP, TOP + 1, (n, steps))
    a[:, ::3] = rng.integers(-vth - 5, vth + 5, (n, (steps + 2) // 3))  # around the threshold
    out = _run({"g": GradedVec(shape=(n,), vth=vth)}, {"g.a_in": a}, {"s": "g.s_out"}, steps)["s"]
    ours = graded_vec(torch.tensor(a), vth).numpy()
    np.testing.assert_array_equal(out, ours)
    assert np.count_nonzero(out) not in (0, out.size)  # both sides of the threshold are met


@needs_lava
def test_norm_vec_delay_matches_lava() -> None:
    from lava.proc.graded.process import NormVecDelay

    rng = np.random.default_rng(2)
    n, steps, vth = 16, 10, 50_000
    top = int(np.sqrt(TOP))  # squares and products within 24 bits, as stac's scales keep them
    a1 = rng.integers(-top, top + 1, (n, steps))
    a2 = rng.integers(0, top + 1, (n, steps))
    got = _run(
        {"v": NormVecDelay(shape=(n,), vth=vth)},
        {"v.a_in1": a1, "v.a_in2": a2},
        {"s": "v.s_out", "s2": "v.s2_out"},
        steps,
    )
    np.testing.assert_array_equal(got["s2"], norm_square(torch.tensor(a1)).numpy())
    held = np.concatenate([np.zeros((n, 1), np.int64), a1[:, :-1]], axis=1)  # v[t-1] in the model
    want = norm_product(torch.tensor(held), torch.tensor(a2), vth).numpy()
    np.testing.assert_array_equal(got["s"], want)
    assert np.count_nonzero(want[:, 1:]) not in (0, want[:, 1:].size)


@needs_lava
def test_inv_sqrt_matches_lava() -> None:
    from lava.proc.graded.process import InvSqrt

    rng = np.random.default_rng(3)
    edges = [0, 1, 2, 3, 4095, 4096, 4097, 2**12 * 3, 2**16, 2**20 + 1, 2**23, 2**24 - 1]
    edges += [2**k - 1 for k in range(2, 24)] + [2**k for k in range(1, 24)]
    s = np.array(edges + list(rng.integers(1, 2**24, 60)), dtype=np.int64)
    out = _run({"i": InvSqrt(shape=(1,))}, {"i.a_in": s[None]}, {"y": "i.s_out"}, s.size)["y"]
    np.testing.assert_array_equal(out[0], inv_sqrt(torch.tensor(s)).numpy())
    # and it is an inverse square root in 12 fraction bits, 2**12 / sqrt(s / 2**12), to within
    # 3 of the integer (the truncating shifts) where the answer is small, 1 % where it is large
    pos = s > 0
    exact = 2.0**18 / np.sqrt(s[pos])
    err = np.abs(out[0][pos] - exact)
    assert np.all(err < np.maximum(3.0, 0.01 * exact))


@needs_lava
def test_loihi2_round_matches_lava() -> None:
    from lava.proc.graded.process import loihi2round

    x = np.array([-2.5, -1.5, -0.5, -0.49, 0.0, 0.49, 0.5, 1.5, 2.5, 7.3, -7.7])
    x = np.concatenate([x, np.random.default_rng(4).normal(0, 1e3, 200)])
    np.testing.assert_array_equal(loihi2_round(torch.tensor(x)).numpy(), loihi2round(x))


def test_rms_norm_fixed_against_closed_form() -> None:
    """The composed NormVecDelay + InvSqrt RMSNorm against ``x / sqrt(mean(x^2) + eps) * w``,
    for vectors with one outlier channel (as LLM residual streams have). Per value the error is
    at most half the input grid step (2**-exp) times the row's 1/rms and the weight, plus a
    relative error of the row's 1/rms: InvSqrt's (under 1 %, test_inv_sqrt_matches_lava) and
    half that of its sum of squares (each square off by at most |a| + 1/4 on the grid, the
    shift truncating less than 2**shift)."""
    gen = torch.Generator().manual_seed(5)
    d, eps = 576, 1e-5
    x = torch.randn(64, d, generator=gen, dtype=torch.float64)
    x[:, 7] *= 40.0
    x[::4] *= 0.25  # quieter tokens: their sums reach InvSqrt far below the calibrated largest
    w = torch.rand(d, generator=gen, dtype=torch.float64) + 0.5
    scale = norm_scale(float(x.abs().max()), float(x.pow(2).sum(-1).max()), d, eps, 24)
    a_max = float(x.abs().max()) * 2.0**scale.exp
    assert 1448 / 2 < a_max and a_max**2 <= TOP  # 11 to 12 bits, and the squares fit 24 bits
    assert scale.shift <= 9  # a * inv fits 24 bits (2 * 23 - 36 - 1)
    rinv = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    want = x * rinv * w
    got = rms_norm_fixed(x, w, scale, 24)
    a = x.abs() * 2.0**scale.exp
    sums = a.pow(2).sum(-1, keepdim=True)
    rel = 0.01 + 0.5 * ((a + 0.25).sum(-1, keepdim=True) + 2.0**scale.shift) / sums
    bound = 0.5 * 2.0**-scale.exp * rinv * w + rel * want.abs()
    assert bool(((got - want).abs() <= bound).all())
    assert float((got - want).abs().max()) > 0  # it is not the float path


def test_tiny_llama_fixed_host_ops_close_to_float(tiny_llama_artifact) -> None:
    """The moved nodes of a tiny Llama (random weights, T = 4) in fixed point. Inside the model,
    each RMSNorm against its closed form on the activations it really sees (measured: 0.09 to
    0.16 % relative error; bound 0.5 %) and each residual within half its grid step. On held-out
    text, the perplexity ratio moves by 0.03 % (0.99715 -> 0.99744) against the SNN's own 0.3 %
    from float; bound 0.5 %. (Logits themselves move more, ~20 %: this random-weight SNN at
    T = 4 is chaotic, 1 % noise on its norms moves them ~27 %.)"""
    from stac.artifact import load_artifact
    from stac.commands.eval import run_eval
    from stac.frontend.text import calibration_windows, evaluation_text
    from stac.ir.nodes import RMSNorm
    from stac.pipeline import simulate
    from stac.profiles import load_profile
    from stac.sim.onchip_fixed import fixed_host_ops
    from stac.sim.semantics import RunContext

    art = load_artifact(tiny_llama_artifact)
    graph, tok = art.graph, art.tokenizer()
    sim = simulate(graph)
    fixed = fixed_host_ops(sim, load_profile("loihi2"), calibration_windows(tok, 2, 32), 4)
    assert len(fixed.scales) == 2 * 2 + 2 * 2 + 1  # 2 residuals, 2 norms per layer, final norm
    errors: dict[str, float] = {}
    base = fixed.overrides(graph)

    def check(name: str):
        def run(node: Any, inp: Any, ctx: Any, n: str, need: bool):
            out, stats = base[name](node, inp, ctx, n, need)
            x = inp.mean()
            if isinstance(node, RMSNorm):
                w = torch.as_tensor(node.weight, dtype=x.dtype)
                want = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + node.eps) * w
                errors[name] = float((out.value - want).norm() / want.norm())
            else:
                want = inp.value if out.per_step else x
                step = 2.0 ** -fixed.scales[name].exp
                errors[name] = float((out.value - want).abs().max()) / step
            return out, stats

        return run

    sim.overrides = {n: check(n) for n in base}
    ids = tok(evaluation_text()[:2000], return_tensors="pt").input_ids[0][:31]
    sim.run(RunContext(torch.cat([torch.tensor([tok.bos_token_id]), ids])[None], steps=4))
    assert len(errors) == len(base)
    for name, err in errors.items():
        assert err <= (0.005 if isinstance(graph.nodes[name], RMSNorm) else 0.5 + 1e-6), name

    kw: dict[str, Any] = {"window": 32, "max_tokens": 124}
    flt = run_eval(tiny_llama_artifact, [4], **kw)
    fix = run_eval(tiny_llama_artifact, [4], host_ops_on_chip="loihi2", **kw)
    moved = fix["host_ops_on_chip"]["per_timesteps"]["4"]["scales"]
    assert sorted({v["kind"] for v in moved.values()}) == ["NormScale", "ResidualScale"]
    f, q = flt["results"][0], fix["results"][0]
    assert q["float_perplexity"] == f["float_perplexity"]  # the same reference and sample
    assert q["snn_perplexity"] != f["snn_perplexity"]  # the fixed path ran
    assert abs(q["perplexity_ratio"] / f["perplexity_ratio"] - 1) < 0.005
    assert "host_ops_on_chip" not in flt


def test_eval_cli_host_ops_on_chip_on_gpt2(tiny_gpt2_artifact, tmp_path, capsys) -> None:
    """``stac eval --host-ops-on-chip`` on a GPT-2: Loihi 2 lists Residual and RMSNorm, so only
    the residual adds move (LayerNorm stays on the host in float); the scales are recorded."""
    import json

    from stac.cli import main

    js = tmp_path / "eval.json"
    args = ["eval", str(tiny_gpt2_artifact), "--timesteps", "4", "--max-tokens", "127"]
    assert main([*args, "--host-ops-on-chip", "--json", str(js)]) == 0
    doc = json.loads(js.read_text())
    block = doc["host_ops_on_chip"]
    assert block["profile"] == "loihi2" and block["calibration_windows"] == 2
    scales = block["per_timesteps"]["4"]["scales"]
    assert scales and {v["kind"] for v in scales.values()} == {"ResidualScale"}
    assert block["per_timesteps"]["4"]["state_bits"] == 24  # loihi2.toml [fixed_point]
    for v in scales.values():  # HEADROOM x the calibrated range fits the 24-bit integer
        assert 2.0 * v["amax"] * 2.0 ** v["exp"] <= 2**23 - 1 < 4.0 * v["amax"] * 2.0 ** v["exp"]


def test_a_moved_op_without_a_fixed_point_model_is_refused(tiny_llama_artifact) -> None:
    import dataclasses

    from stac.artifact import load_artifact
    from stac.errors import StacError
    from stac.profiles import load_profile
    from stac.sim.onchip_fixed import moved_nodes

    profile = load_profile("loihi2")
    row = profile.capabilities["Residual"]
    wider = dataclasses.replace(
        profile, capabilities={**profile.capabilities, "GatedActivation": row}
    )
    graph = load_artifact(tiny_llama_artifact).graph
    assert len(moved_nodes(graph, profile)) == 9
    with pytest.raises(StacError, match="GatedActivation.*no fixed-point model"):
        moved_nodes(graph, wider)


@pytest.mark.parametrize("first_position", ["host", "chip"])
def test_first_position_norms_on_the_host_keep_an_attention_sink_out_of_the_scales(
    tiny_llama_artifact, first_position
) -> None:
    """An attention sink as in SmolLM2 (position 0 carrying a massive activation, here 3,000x
    one channel of its embedding): with the first position's norms on the host the scales are
    calibrated on the other positions, whose norms stay within 0.5 % of the closed form, and
    position 0 is the closed form itself; with it on the chip one scale must cover the sink
    and the other positions' norms lose their resolution (more than 5 % error)."""
    from stac.artifact import load_artifact
    from stac.frontend.text import calibration_windows, evaluation_text
    from stac.ir.nodes import RMSNorm
    from stac.pipeline import simulate
    from stac.profiles import load_profile
    from stac.sim.onchip_fixed import fixed_host_ops
    from stac.sim.semantics import SEMANTICS, RunContext
    from stac.sim.signal import Signal

    art = load_artifact(tiny_llama_artifact)
    graph, tok = art.graph, art.tokenizer()
    (embed,) = [n for n, v in graph.nodes.items() if type(v).__name__ == "Embedding"]

    def sink(node: Any, inp: Any, ctx: Any, name: str, need: bool):
        out, stats = SEMANTICS[type(node)](node, inp, ctx, name, need)
        value = out.value.clone()
        value[..., 0, 0] *= 3000.0  # position 0, channel 0
        return Signal(value, out.per_step), stats

    sim = simulate(graph)
    sim.overrides = {embed: sink}
    calibration = calibration_windows(tok, 2, 32)
    fixed = fixed_host_ops(sim, load_profile("loihi2"), calibration, 4, first_position)
    assert fixed.doc()["first_position_norms"] == first_position
    base = fixed.overrides(graph)
    first_err: dict[str, float] = {}
    rest_err: dict[str, float] = {}

    def check(name: str):
        def run(node: Any, inp: Any, ctx: Any, n: str, need: bool):
            out, stats = base[name](node, inp, ctx, n, need)
            x = inp.mean()
            w = torch.as_tensor(node.weight, dtype=x.dtype)
            want = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + node.eps) * w
            got = out.value
            first_err[name] = float((got[:, 0] - want[:, 0]).norm() / want[:, 0].norm())
            rest_err[name] = float((got[:, 1:] - want[:, 1:]).norm() / want[:, 1:].norm())
            return out, stats

        return run

    norms = [n for n in base if isinstance(graph.nodes[n], RMSNorm)]
    sim.overrides = {embed: sink, **base, **{n: check(n) for n in norms}}
    ids = tok(evaluation_text()[:2000], return_tensors="pt").input_ids[0][:31]
    sim.run(RunContext(torch.cat([torch.tensor([tok.bos_token_id]), ids])[None], steps=4))
    assert set(rest_err) == set(norms)
    if first_position == "host":
        assert max(first_err.values()) < 1e-6
        assert max(rest_err.values()) <= 0.005
    else:
        assert max(rest_err.values()) > 0.05
