"""Lowering is exact: the IR run as a float ANN reproduces the Hugging Face model's logits."""

import pytest
import torch

from stac.frontend import ConversionConfig, convert, load_model
from stac.ir import verify
from stac.sim.semantics import RunContext
from stac.sim.simulator import Simulator


def _float_logits(graph, ids, **ctx):
    return Simulator(graph).run(RunContext(ids, steps=1, spiking=False, **ctx))[0]["output"]


@pytest.fixture(scope="module")
def smollm2_graph(smollm2):
    return verify(convert(smollm2, ConversionConfig(timesteps=16, calibration_passages=4)))


def test_smollm2_float_graph_matches_transformers(smollm2, smollm2_graph, hamlet_ids):
    ids = hamlet_ids[None, :96]
    with torch.no_grad():
        ref = smollm2.model(ids).logits
    got = _float_logits(smollm2_graph, ids)
    assert torch.allclose(got, ref, atol=2e-3, rtol=1e-4), (got - ref).abs().max()


@pytest.mark.parametrize("fixture", ["tiny_gpt2_dir", "distilgpt2_shape_dir"])
def test_gpt2_float_graph_matches_transformers(request, fixture, hamlet_ids):
    loaded = load_model(str(request.getfixturevalue(fixture)))
    assert loaded.family == "gpt2"
    graph = verify(convert(loaded, ConversionConfig(timesteps=8, calibration_passages=2)))
    ids = hamlet_ids[None, :64]
    with torch.no_grad():
        ref = loaded.model(ids).logits
    got = _float_logits(graph, ids)
    assert torch.allclose(got, ref, atol=1e-3, rtol=1e-4), (got - ref).abs().max()


def test_kv_cache_continuation_equals_full_run(smollm2_graph, hamlet_ids):
    ids = hamlet_ids[None, :40]
    full = _float_logits(smollm2_graph, ids)
    sim = Simulator(smollm2_graph)
    cache: dict = {}
    first = sim.run(RunContext(ids[:, :25], steps=1, spiking=False, kv_cache=cache, use_cache=True))
    second = sim.run(
        RunContext(ids[:, 25:], steps=1, spiking=False, kv_cache=cache, use_cache=True)
    )
    stitched = torch.cat([first[0]["output"], second[0]["output"]], dim=1)
    assert torch.allclose(stitched, full, atol=1e-3)


def test_the_graph_has_one_encoder_per_linear_map(smollm2_graph, smollm2):
    layers = smollm2.model.config.num_hidden_layers
    kinds = [type(n).__name__ for n in smollm2_graph.nodes.values()]
    assert kinds.count("SignedIF") == 4 * layers + 1  # qkv, o, gate/up, down per layer + head
    assert kinds.count("Linear") == 4 * layers + 1
    assert kinds.count("CausalSelfAttention") == layers
    # the LM head is tied to the embedding and stays one array
    assert smollm2_graph.nodes["lm_head"].weight is smollm2_graph.nodes["embed"].weight
