"""``--readout-bits``: values leaving the chip as rounded, saturated graded spikes.

Checked against things the readout code does not compute: the closed form on hand-picked
values; the transformers model's own linear outputs (forward hooks) for the calibrated shifts;
the rule that a readout adds no cores; the bit count on the host link; the bundle's ONNX run
(onnxruntime) against the simulator; and the refusals.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stac.backends import resolve_target
from stac.errors import StacError
from stac.frontend import ConversionConfig, convert, load_model
from stac.frontend.readout import SUFFIX, accumulator_unit, readout_sources
from stac.frontend.text import calibration_windows
from stac.ir.graph import predecessors
from stac.ir.nodes import Readout
from stac.ir.passes import run_passes
from stac.sim.link_width import value_bits
from stac.sim.semantics import SEMANTICS, RunContext
from stac.sim.signal import Signal
from stac.sim.simulator import Simulator

T = 4
BITS = 12


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load_model(str(tiny_llama_dir))


@pytest.fixture(scope="module")
def graphs(tiny):
    """The tiny Llama in full mode without and with 12-bit readouts."""
    cfg = dict(timesteps=T, mode="full", calibration_passages=1)
    plain = convert(tiny, ConversionConfig(**cfg))
    with_ro = convert(tiny, ConversionConfig(**cfg, readout_bits=BITS))
    return plain, with_ro


def test_closed_form_on_hand_values():
    """step 1, T 2, 4 bits (L = 7): T x = 0.4 -> 0, 0.6 -> 1, -0.6 -> -1, 200 -> 7 (saturated),
    and the host reads level * step / T."""
    node = Readout(np.ones(4, dtype=np.float32), 4)
    x = torch.tensor([[[0.2, 0.3, -0.3, 100.0]]])
    ctx = RunContext(torch.zeros(1, 1, dtype=torch.int64), steps=2)
    out, stats = SEMANTICS[Readout](node, Signal(x, False), ctx, "r", False)
    assert out.value.flatten().tolist() == [0.0, 0.5, -0.5, 3.5]
    assert stats.spikes == 0  # priced by the host link, not as spikes


def test_every_host_read_goes_through_a_readout(graphs):
    plain, ro = graphs
    sources = readout_sources(plain)
    assert sources  # q/k/v, o_proj, gate/up, down, lm_head
    for lin, readers in sources.items():
        r = lin + SUFFIX
        assert isinstance(ro.nodes[r], Readout) and ro.nodes[r].bits == BITS
        assert (lin, r) in ro.edges and all((r, d) in ro.edges for d in readers)
        assert not any((lin, d) in ro.edges for d in readers)
    assert len(ro.nodes) == len(plain.nodes) + len(sources)


def test_shift_fits_the_float_models_largest_sum(graphs, tiny):
    """Each readout's step is its accumulator unit times 2**shift, and the shift is the one the
    transformers model's largest output on the calibration window asks for (headroom 4, one
    bit either way for the spiking error)."""
    _, ro = graphs
    pre = predecessors(ro)
    outputs: dict[str, float] = {}
    hooks = []
    layer = tiny.model.model.layers[0]
    modules = {
        "layer0_qkv": [layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj],
        "layer0_gate_up": [layer.mlp.gate_proj, layer.mlp.up_proj],
        "layer0_down": [layer.mlp.down_proj],
    }
    for lin, mods in modules.items():
        for m in mods:

            def hook(_m, _i, out, lin=lin):
                outputs[lin] = max(outputs.get(lin, 0.0), float(out.abs().max()))

            hooks.append(m.register_forward_hook(hook))
    (window,) = calibration_windows(tiny.tokenizer, 1, 128)
    with torch.no_grad():
        tiny.model(window[None])
    for h in hooks:
        h.remove()
    top = 2 ** (BITS - 1) - 1
    for lin, peak_float in outputs.items():
        node = ro.nodes[lin + SUFFIX]
        unit = accumulator_unit(ro, pre[lin + SUFFIX][0])
        shift = int(node.metadata["shift"])
        np.testing.assert_allclose(node.step, unit * 2.0**shift, rtol=1e-6)
        want = max(0, math.ceil(math.log2(4.0 * peak_float * T / float(unit.min()) / top)))
        assert abs(shift - want) <= 1, (lin, shift, want)


def test_readouts_add_no_cores_and_price_their_bits(graphs):
    plain, ro = graphs
    profile, _ = resolve_target("loihi2-sim")
    a, b = run_passes(plain, profile), run_passes(ro, profile)
    assert b.metadata["partition"].cores == a.metadata["partition"].cores
    assert b.metadata["partition"].neurons == a.metadata["partition"].neurons
    bits, why = value_bits(ro, "layer0_qkv" + SUFFIX, "layer0_attn", False, T)
    assert (bits, why) == (BITS, "")


def test_readout_changes_only_what_it_rounds(graphs, hamlet_ids):
    """Logits with 12-bit readouts stay close to those without; each readout's output is the
    closed form of its input."""
    plain, ro = graphs
    ids = hamlet_ids[None, 100:116]
    seen: dict[str, Signal] = {}

    def rec(node, inp, ctx, name, need):
        out, stats = SEMANTICS[type(node)](node, inp, ctx, name, need)
        seen[name] = inp if isinstance(node, Readout) else out
        return out, stats

    ref, _ = Simulator(plain).run(RunContext(ids, steps=T))
    got, _ = Simulator(ro, {n: rec for n in ro.nodes}).run(RunContext(ids, steps=T))
    (key,) = ref
    rel = float((got[key] - ref[key]).abs().max() / ref[key].abs().max())
    assert 0 < rel < 0.05
    node = ro.nodes["layer0_qkv" + SUFFIX]
    x = seen["layer0_qkv" + SUFFIX].mean().double().numpy()
    level = np.clip(np.floor(T * x / node.step + 0.5), -node.max_level, node.max_level)
    assert np.all(level == np.rint(level))


def test_refusals():
    with pytest.raises(StacError, match="--mode full only"):
        ConversionConfig(mode="simplified", readout_bits=24)
    with pytest.raises(StacError, match="readout bits 1"):
        ConversionConfig(mode="full", readout_bits=1)
    with pytest.raises(StacError, match="readout bits 40"):
        ConversionConfig(mode="full", readout_bits=40)
    with pytest.raises(ValueError, match="Readout.bits"):
        Readout(np.ones(2, dtype=np.float32), 33)


def test_readout_on_a_host_map_stays_on_the_host(graphs):
    """A map kept on the host (``--host-nodes``) keeps its readout there too: no value goes
    host -> chip -> host."""
    from stac.ir.passes.partition import keep_on_host
    from stac.ir.results import node_placement

    _, ro = graphs
    profile, _ = resolve_target("loihi2-sim")
    out = run_passes(keep_on_host(ro, ["lm_head_in", "lm_head"]), profile)
    place = {n: node_placement(v) for n, v in out.nodes.items()}
    assert not place["lm_head" + SUFFIX].on_chip
    assert place["layer0_qkv" + SUFFIX].on_chip


def test_bundle_runs_the_readouts(tiny_llama_dir, tmp_path, hamlet_ids):
    """The exported bundle (ONNX host stages under onnxruntime) computes the readouts as the
    simulator does."""
    from stac.artifact import load_artifact
    from stac.bundle.runner import Bundle
    from stac.cli import main
    from stac.commands.compile import CompileRequest, compile_model

    art = tmp_path / "art"
    compile_model(
        CompileRequest(
            model=str(tiny_llama_dir),
            target="loihi2-sim",
            output_dir=art,
            conversion=ConversionConfig(
                timesteps=T, mode="full", calibration_passages=1, readout_bits=BITS
            ),
        )
    )
    assert main(["export", str(art), "--bundle", str(tmp_path / "bundle")]) == 0
    ids = hamlet_ids[None, 300:316]
    graph = load_artifact(art).graph
    assert any(isinstance(v, Readout) for v in graph.nodes.values())
    ref, _ = Simulator(graph).run(RunContext(ids, steps=T))
    got, _ = Bundle(tmp_path / "bundle").run(ids)
    (key,) = ref
    assert float((got.logits - ref[key]).abs().max() / ref[key].abs().max()) <= 1e-5


def test_finetune_passes_gradients_through_readouts(graphs, hamlet_ids):
    """In the differentiable forward a readout rounds straight-through: the loss reaches the
    q/k/v weights behind layer 0's readout (floor alone has a zero gradient); the export keeps
    each readout's shift and sets its step from the exported map's scales and thresholds."""
    from stac.train.graphnet import GraphNet

    _, ro = graphs
    net = GraphNet(ro)
    logits, _ = net(hamlet_ids[None, 100:116], T)
    logits.float().pow(2).mean().backward()
    grad = net.params["layer0_qkv__weight"].grad
    assert grad is not None and float(grad.abs().sum()) > 0
    out = net.export(T)
    pre = predecessors(out)
    for name, node in out.nodes.items():
        if isinstance(node, Readout):
            unit = accumulator_unit(out, pre[name][0])
            np.testing.assert_allclose(node.step, unit * 2.0 ** node.metadata["shift"], rtol=1e-6)
