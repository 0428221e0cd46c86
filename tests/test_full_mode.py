"""Full-mode conversion: graded onset-driven encoders, 8-bit folded weights, optimised steps.

The central property (the issue's "after T steps the SNN equals the quantised ANN"): each
encoder's T-step output is the closed-form quantiser ``theta/T * clip(floor(T x / theta +
1/2), -T K, T K)``, and the whole spiking graph equals the Hugging Face model with those
quantisers on the inputs of its linear layers and the graph's quantised weights. The SNN side
is the stateful step-by-step scan in the simulator; the ANN side is the real transformers
model with forward hooks, an implementation that shares nothing with the simulator.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stac.eval import evaluate, float_logits, windows
from stac.frontend import ConversionConfig, convert, load_model
from stac.frontend.calibrate import encoder_quantiser
from stac.frontend.gpt2 import neuron_inputs as gpt2_inputs
from stac.ir.nodes import SignedIF
from stac.sim.semantics import SEMANTICS, RunContext
from stac.sim.signal import Signal
from stac.sim.simulator import Simulator

T = 8


@pytest.fixture(scope="module")
def full_smollm2(smollm2):
    return convert(smollm2, ConversionConfig(timesteps=T, mode="full", calibration_passages=4))


def _encoders(graph):
    return {n: v for n, v in graph.nodes.items() if isinstance(v, SignedIF)}


def test_full_mode_nodes(full_smollm2):
    enc = _encoders(full_smollm2)
    assert len(enc) == 121
    assert all(e.onset_drive and e.max_payload >= 127 for e in enc.values())
    for name in ("layer0_qkv", "layer17_down", "lm_head"):
        quant = full_smollm2.nodes[name].metadata["quant"]
        assert quant["bits"] == 8 and 0 < quant["relative_error"] < 0.02
        # The chip's weight is an 8-bit integer per synapse times its row's scale.
        q = full_smollm2.nodes[name].weight.astype(np.float64) / quant["scale"][:, None]
        assert np.abs(q).max() <= 127 + 1e-3
        assert np.allclose(q, np.rint(q), atol=2e-3)
        # Spike values are power-of-two multiples of the layer's smallest: integer shifts.
        theta = full_smollm2.nodes[f"{name}_in"].threshold.astype(np.float64)
        ratio = np.log2(theta / theta.min())
        assert np.allclose(ratio, np.rint(ratio), atol=1e-6)


def test_real_layer_equals_its_quantised_ann(full_smollm2, smollm2, hamlet_ids):
    """Layer 11's down_proj on real text: the encoder scan then the synapses equal the
    closed-form quantiser then the same weights, to float rounding."""
    captured = {}
    module = smollm2.model.model.layers[11].mlp.down_proj
    handle = module.register_forward_pre_hook(lambda m, a: captured.setdefault("x", a[0][0]))
    try:
        with torch.no_grad():
            smollm2.model(hamlet_ids[None, :96])
    finally:
        handle.remove()
    x = captured["x"]
    enc, lin = full_smollm2.nodes["layer11_down_in"], full_smollm2.nodes["layer11_down"]
    ctx = RunContext(hamlet_ids[None, :96], steps=T)
    ctx.params = lambda a: torch.as_tensor(np.asarray(a, np.float32))
    spikes, stats = SEMANTICS[SignedIF](enc, Signal(x, False), ctx, "enc", True)
    snn = spikes.mean()
    theta = torch.as_tensor(enc.threshold)
    ann = encoder_quantiser(x, theta, T, enc.max_payload)
    assert torch.allclose(snn, ann, rtol=1e-6, atol=1e-6 * float(theta.max()))
    w = torch.as_tensor(lin.weight)
    assert torch.allclose(snn @ w.T, ann @ w.T, rtol=1e-4, atol=1e-4)
    # and it is a real quantiser, not the identity: values land on the theta/T grid
    assert not torch.allclose(ann, x, atol=1e-4)
    assert 0 < stats.spikes < spikes.value.numel()


def _quantised_ann_logits(model, graph, neuron_inputs, ids, steps):
    """The HF model with the graph's quantised weights and the encoders' quantisers."""
    enc = _encoders(graph)
    handles = []
    for name, module in neuron_inputs(model).items():
        node = enc[name]
        theta = torch.as_tensor(node.threshold)

        def hook(mod, args, theta=theta, k=node.max_payload):
            return (encoder_quantiser(args[0], theta, steps, k),)

        handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            return model(ids).logits[0]
    finally:
        for h in handles:
            h.remove()


def test_whole_small_model_equals_its_quantised_ann(tiny_gpt2_dir):
    loaded = load_model(str(tiny_gpt2_dir))
    graph = convert(loaded, ConversionConfig(timesteps=T, mode="full", calibration_passages=2))
    model = loaded.model
    # Put the graph's quantised weights into the HF model (Conv1D holds [in, out]). The
    # quantised weights are the graph's; the quantisers on the activations are the test's.
    with torch.no_grad():
        for i, block in enumerate(model.transformer.h):
            for conv, node in (
                (block.attn.c_attn, f"layer{i}_qkv"),
                (block.attn.c_proj, f"layer{i}_o_proj"),
                (block.mlp.c_fc, f"layer{i}_fc"),
                (block.mlp.c_proj, f"layer{i}_down"),
            ):
                conv.weight.copy_(torch.as_tensor(graph.nodes[node].weight).T)
        model.lm_head.weight = torch.nn.Parameter(torch.as_tensor(graph.nodes["lm_head"].weight))
    ids = torch.randint(
        0, model.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(1)
    )
    ann = _quantised_ann_logits(model, graph, gpt2_inputs, ids, T)
    snn = Simulator(graph).run(RunContext(ids, steps=T))[0]["output"][0]
    # The two paths compute each encoder's input in a different float order (HF's attention
    # vs the simulator's), about 3e-7 apart; an input that close to a rounding boundary of its
    # quantiser lands one level off. So almost every logit agrees to float rounding, and the
    # rare boundary case moves some logits by one level times a weight (~1e-4 here).
    scale = float(ann.abs().max())
    diff = (snn - ann).abs()
    assert float(diff.mean()) < 2e-6 * scale, float(diff.mean())
    assert float(diff.max()) < 1e-3 * scale, float(diff.max())
    assert (snn.argmax(-1) == ann.argmax(-1)).all()
    # Without the quantisers the HF model is far from the SNN: the test can see quantisation.
    with torch.no_grad():
        plain = model(ids).logits[0]
    assert float((plain - snn).abs().mean()) > 100 * float(diff.mean())


def test_full_mode_beats_simplified_on_the_bundled_model(full_smollm2, smollm2, hamlet_ids):
    chunks = windows(smollm2.tokenizer, hamlet_ids[3000:], 128, 3)
    ref = float_logits(smollm2.model, chunks)
    simplified = convert(smollm2, ConversionConfig(timesteps=T, calibration_passages=4))
    full = evaluate(full_smollm2, chunks, [T], ref)[0]
    simple = evaluate(simplified, chunks, [T], ref)[0]
    assert full.top1_agreement > simple.top1_agreement + 0.2
    assert full.perplexity_ratio < 1.1 < simple.perplexity_ratio
    assert full.bits_per_spike > simple.bits_per_spike == 1.0


@pytest.mark.parametrize("payload_bits", [1, 8])
def test_spike_rates_are_neither_zero_nor_saturated(
    smollm2, hamlet_ids, full_smollm2, payload_bits
):
    graph = (
        full_smollm2
        if payload_bits == 8
        else convert(
            smollm2,
            ConversionConfig(timesteps=T, mode="full", payload_bits=1, calibration_passages=4),
        )
    )
    _, stats = Simulator(graph).run(RunContext(hamlet_ids[None, 500:564], steps=T))
    rates = {n: stats[n].spikes / stats[n].neuron_updates for n in _encoders(graph)}
    dead = [n for n, r in rates.items() if r < 1e-3]
    saturated = [n for n, r in rates.items() if r > 0.9]
    assert not dead and not saturated, (dead, saturated)


def test_payload_bits_are_reported(full_smollm2):
    enc = _encoders(full_smollm2)
    assert all(8 <= e.bits_per_spike() <= 32 for e in enc.values())  # Loihi 2: up to 32
    assert SignedIF(np.ones(2, np.float32)).bits_per_spike() == 1
    assert SignedIF(np.ones(2, np.float32), max_payload=127).bits_per_spike() == 8
    # a spike of a channel 4x the smallest threshold carries two more bits
    assert SignedIF(np.array([1.0, 4.0], np.float32), max_payload=127).bits_per_spike() == 10


def test_full_mode_config_errors():
    from stac.errors import StacError

    with pytest.raises(StacError, match="payload bits"):
        ConversionConfig(mode="full", payload_bits=0)
    with pytest.raises(StacError, match="apply to --mode full only"):
        ConversionConfig(payload_bits=4)
    with pytest.raises(StacError, match="headroom"):
        ConversionConfig(mode="full", headroom=0.5)
