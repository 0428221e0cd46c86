"""`stac.eval.evaluate(spiking=...)`: the weights alone, and one group of encoders at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llama_weights import copy_maps

from stac.artifact import load_artifact
from stac.errors import StacError
from stac.eval import evaluate, float_logits, windows
from stac.frontend.models import load_model
from stac.ir.nodes import SignedIF

T = 4


@pytest.fixture(scope="module")
def full_llama(tmp_path_factory, tiny_llama_dir):
    """The tiny Llama in full mode (8-bit GPTQ weights, graded spikes) at T = 4."""
    from stac.commands.compile import CompileRequest, compile_model
    from stac.frontend import ConversionConfig

    out = tmp_path_factory.mktemp("full-llama") / "artifact"
    conversion = ConversionConfig(mode="full", timesteps=T, calibration_passages=1)
    compile_model(CompileRequest(str(tiny_llama_dir), "loihi2-sim", out, conversion))
    return load_artifact(out)


def test_weights_alone_is_the_hugging_face_model_with_those_weights(
    full_llama, tiny_llama_dir, hamlet_ids
):
    """With spiking off, the graph is the float Llama holding the artifact's 8-bit weights:
    the transformers forward with those weights copied in agrees at every position."""
    graph, tok = full_llama.graph, full_llama.tokenizer()
    chunks = windows(tok, hamlet_ids, 32, 3)
    model = load_model(str(tiny_llama_dir)).model.eval()
    original = float_logits(model, chunks)
    copy_maps(model, lambda name: torch.from_numpy(np.asarray(graph.nodes[name].weight)))
    quantised = float_logits(model, chunks)
    assert not all(torch.equal(a, b) for a, b in zip(original, quantised, strict=True))
    r = evaluate(graph, chunks, [T], quantised, spiking=False)[0]
    assert r.top1_agreement == 1.0
    assert abs(r.perplexity_ratio - 1.0) < 1e-4 and abs(r.mean_kl) < 2e-8
    assert r.spike_rate == 0.0  # nothing spiked
    spiking = evaluate(graph, chunks, [T], quantised)[0]  # (a random model: logits near flat)
    assert spiking.mean_kl > 5 * abs(r.mean_kl) and spiking.spike_rate > 0


def test_one_group_spiking(full_llama, hamlet_ids):
    """Only the named encoders spike (and count spikes); a name the graph lacks is an error."""
    graph, tok = full_llama.graph, full_llama.tokenizer()
    chunks = windows(tok, hamlet_ids, 32, 2)
    refs = [torch.zeros(c.numel(), graph.nodes["lm_head"].weight.shape[0]) for c in chunks]
    encoders = [k for k, v in graph.nodes.items() if isinstance(v, SignedIF)]
    downs = frozenset(k for k in encoders if k.endswith("_down_in"))
    assert downs and len(downs) < len(encoders)
    r = evaluate(graph, chunks, [T], refs, spiking=downs)[0]
    assert set(r.layer_spike_rates) == set(encoders)
    assert all((r.layer_spike_rates[k] > 0) == (k in downs) for k in encoders)
    with pytest.raises(StacError, match="not spiking encoders"):
        evaluate(graph, chunks, [T], refs, spiking=frozenset({"layer0_nothing"}))
