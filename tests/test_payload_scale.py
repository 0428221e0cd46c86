"""Per-channel payload scales (``--payload-scale channel``): a graded spike counts in units of
its own channel's threshold, so no channel's payload is capped by the layer's spread.

The model: the tiny random Llama (conftest) with one channel of layer 0's ``down_proj`` input
made 3000 times larger (its ``up_proj`` row scaled), as SmolLM2's attention-sink channel is.
On a target whose graded spikes carry 16 bits, a per-layer payload (counts shifted by each
channel's exponent, ``K theta_max / theta_min``) cannot hold that layer's spread and is capped;
a per-channel payload (``K`` alone) is not. Checked against things stac does not compute:

* the calibrated maximum of every encoder input, recorded here with forward hooks on the
  transformers model over the same calibration windows: stac's T-step quantiser (the closed
  form of its scan) returns every channel's maximum within half a step ``theta / (2T)`` (no
  clipping) with per-channel scales, and clips the large channel with per-layer ones;
* the transformers logits on held-out text: the spiking forward is much closer to them with
  per-channel scales;
* the Loihi 2 profile: the graph passes quantise and legality with no error; an encoder whose
  thresholds spread wider than the weight exponent's range is an error naming it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stac.backends import resolve_target
from stac.frontend import ConversionConfig, LoadedModel, convert, load_model
from stac.frontend.llama import neuron_inputs
from stac.frontend.text import calibration_windows, with_bos
from stac.ir.graph import make_graph
from stac.ir.nodes import SignedIF
from stac.ir.passes import run_passes
from stac.ir.passes.common import replace_fields
from stac.ir.passes.quantise import quantise
from stac.pipeline import lower
from stac.pipeline import run as run_backend
from stac.sim.neurons import onset_quantiser
from stac.sim.semantics import RunContext
from stac.sim.simulator import Simulator
from stac.train.graphnet import GraphNet

T = 4
SINK = 5  # the large channel of layer0_down_in
BITS = 16  # graded spike payload of the constructed target
CFG = dict(timesteps=T, mode="full", calibration_passages=1, max_spike_bits=BITS)


@pytest.fixture(scope="module")
def sink_llama(tiny_llama_dir) -> LoadedModel:
    loaded = load_model(str(tiny_llama_dir))
    with torch.no_grad():
        loaded.model.model.layers[0].mlp.up_proj.weight[SINK] *= 3000.0
    return loaded


@pytest.fixture(scope="module")
def graphs(sink_llama):
    return {
        scale: convert(sink_llama, ConversionConfig(**CFG, payload_scale=scale))
        for scale in ("layer", "channel")
    }


@pytest.fixture(scope="module")
def absmax(sink_llama) -> dict[str, torch.Tensor]:
    """Each encoder input's per-channel absolute maximum over the calibration windows (BOS
    included), from hooks on the transformers modules."""
    found: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in neuron_inputs(sink_llama.model).items():

        def hook(_m, args, name=name) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).abs().amax(0)
            found[name] = torch.maximum(found[name], x) if name in found else x

        hooks.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            for ids in calibration_windows(sink_llama.tokenizer, 1, 128):
                sink_llama.model(ids[None])
    finally:
        for h in hooks:
            h.remove()
    return found


def _quantised(node: SignedIF, x: torch.Tensor) -> torch.Tensor:
    theta = torch.as_tensor(np.asarray(node.threshold), dtype=x.dtype)
    return onset_quantiser(x, theta, T, int(node.max_payload))


def test_the_large_channel_is_clipped_with_a_per_layer_payload(graphs, absmax):
    enc = graphs["layer"].nodes["layer0_down_in"]
    assert "payload_capped" in enc.metadata["quant"]
    assert enc.bits_per_spike() <= BITS
    x = absmax["layer0_down_in"]
    out = _quantised(enc, x)
    assert float(out[SINK]) < 0.5 * float(x[SINK]), (float(out[SINK]), float(x[SINK]))


def test_no_channel_is_clipped_with_a_per_channel_payload(graphs, absmax):
    g = graphs["channel"]
    encoders = {n: v for n, v in g.nodes.items() if isinstance(v, SignedIF)}
    assert set(encoders) == set(absmax)
    for name, enc in encoders.items():
        quant = enc.metadata["quant"]
        assert "payload_capped" not in quant, name
        assert quant["payload_scale"] == "channel"
        k = int(enc.max_payload)
        assert enc.bits_per_spike() == 1 + int(np.ceil(np.log2(k + 1))) <= BITS, name
        x = absmax[name]
        theta = torch.as_tensor(np.asarray(enc.threshold), dtype=x.dtype)
        err = (_quantised(enc, x) - x).abs()
        assert bool((err <= theta / (2 * T) * (1 + 1e-5)).all()), (name, float(err.max()))
    # the layer that needed it: its spread is wide and its payload wider than per-layer allowed
    enc = encoders["layer0_down_in"]
    spread = float(enc.threshold.max() / enc.threshold.min())
    assert spread >= 2**8 and enc.max_payload * spread > 2 ** (BITS - 1)


def test_the_spiking_forward_is_closer_to_transformers(graphs, sink_llama, hamlet_ids):
    profile, backend = resolve_target("loihi2-sim")
    ids = with_bos(sink_llama.tokenizer, hamlet_ids[2000:2063])[None]
    with torch.no_grad():
        ref = sink_llama.model(ids).logits
    spread = (ref - ref.mean(-1, keepdim=True)).norm()
    rel = {}
    for scale, g in graphs.items():
        out = run_backend(backend, lower(g, profile, backend), RunContext(ids, steps=T))
        rel[scale] = float((out[0]["output"] - ref).norm() / spread)
    assert rel["channel"] < 0.06 and rel["channel"] < rel["layer"] / 3, rel  # 0.029, 0.218


def test_it_passes_the_loihi2_passes(graphs):
    profile, _ = resolve_target("loihi2-sim")
    fitted = run_passes(graphs["channel"], profile)
    errors = [
        i for issues in fitted.metadata["issues"].values() for i in issues if i.level == "error"
    ]
    assert errors == []


def test_a_spread_beyond_the_weight_exponents_is_an_error_naming_the_encoder(graphs):
    profile, _ = resolve_target("loihi2-sim")
    g = graphs["channel"]
    fx = profile.values["fixed_point"]
    span = int(fx["weight_exp_max"]) - int(fx["weight_exp_min"])
    enc = g.nodes["layer1_qkv_in"]
    theta = np.asarray(enc.threshold).copy()
    theta[0] = theta.min() * 2.0 ** (span + 1)  # still a power of two of the others
    theta[1] = theta.min()
    nodes = {**g.nodes, "layer1_qkv_in": replace_fields(enc, threshold=theta)}
    issues = quantise(make_graph(nodes, g.edges, g.metadata), profile).metadata["issues"]
    found = [i for i in issues["quantise"] if i.level == "error"]
    assert [(i.node, i.limit) for i in found] == [("layer1_qkv_in", "fixed_point.weight_exp_min")]
    assert f"range of {span}" in found[0].message


def test_finetuned_thresholds_that_spread_wider_keep_a_per_layer_payload_within_the_target(
    graphs, hamlet_ids, sink_llama
):
    """Fine-tuning moves thresholds; a per-layer payload whose smallest threshold falls would
    need ``K theta_max / theta_min`` beyond the target's bits (SmolLM2's layer28_down_in reached
    33 of Loihi 2's 32 after 3 steps). The forward and the export cap K to what fits."""
    g = graphs["layer"]
    enc = g.nodes["layer0_down_in"]
    theta = np.asarray(enc.threshold, np.float64)
    spread = theta.max() / theta.min()
    assert enc.bits_per_spike() <= BITS and "payload_capped" in enc.metadata["quant"]
    net = GraphNet(g, payload_bits=BITS)
    with torch.no_grad():  # the smallest threshold a quarter: the spread four times wider
        net.params["layer0_down_in__log_threshold"][int(np.argmin(theta))] = -math.log(4.0)
    out = net.export(T)
    new = out.nodes["layer0_down_in"]
    assert new.max_payload == (2 ** (BITS - 1) - 1) // int(round(4 * spread))
    assert new.bits_per_spike() <= BITS
    # the trained forward is the simulator's on the exported graph
    ids = with_bos(sink_llama.tokenizer, hamlet_ids[3000:3023])[None]
    with torch.no_grad():
        logits, _ = net(ids, T)
    ref, _ = Simulator(out).run(RunContext(ids, steps=T))
    assert torch.equal(logits, ref["output"])


def test_a_graded_threshold_moves_only_after_half_an_octave(graphs):
    """A graded encoder's trained threshold is T times a power of two, rounded to the nearest
    in log2: it starts exactly on one, so a small step either way leaves it; past half an
    octave it halves (a floor in log2 halved it at the first downward step)."""
    net = GraphNet(graphs["channel"])
    name = "layer1_qkv_in"
    theta0 = torch.as_tensor(np.asarray(graphs["channel"].nodes[name].threshold))
    param = net.params[f"{name}__log_threshold"]
    for move, factor in ((-1e-3, 1.0), (1e-3, 1.0), (-0.3, 1.0), (-0.4, 0.5), (0.4, 2.0)):
        with torch.no_grad():  # moves in ln: half an octave is ln(2) / 2 = 0.347
            param.fill_(move)
        assert torch.equal(net.threshold(name, T), theta0 * factor), move
