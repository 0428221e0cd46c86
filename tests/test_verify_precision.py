"""`stac verify` on a full-mode artifact (graded payloads): the cached path equals a full
recompute exactly once float rounding cannot move a quantiser decision (issue 16, item 7).

The model is the bundled SmolLM2 cut to its first two layers (real weights, so real outlier
channels and logits of real size), compiled in full mode.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from stac.artifact import load_artifact
from stac.cli import main
from stac.errors import StacError
from stac.frontend.text import play_text
from stac.runtime import TemporalSpikeProcessor
from stac.runtime.verify import ATOL, Agreement

LAYERS = 2


@pytest.fixture(scope="module")
def full_artifact(tmp_path_factory, smollm2) -> Path:
    from stac.commands.compile import CompileRequest, compile_model
    from stac.frontend import ConversionConfig

    config = smollm2.model.config.__class__.from_dict(smollm2.model.config.to_dict())
    config.num_hidden_layers = LAYERS
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:LAYERS]
    model = AutoModelForCausalLM.from_config(config)
    keep = {
        k: v
        for k, v in smollm2.model.state_dict().items()
        if not k.startswith("model.layers.") or int(k.split(".")[2]) < LAYERS
    }
    model.load_state_dict(keep)
    src = tmp_path_factory.mktemp("smol2") / "model"
    model.save_pretrained(src)
    smollm2.tokenizer.save_pretrained(src)
    out = tmp_path_factory.mktemp("smol2-full") / "art"
    compile_model(
        CompileRequest(
            model=str(src),
            target="loihi2-sim",
            output_dir=out,
            conversion=ConversionConfig(timesteps=8, calibration_passages=1, mode="full"),
        )
    )
    return out


@pytest.fixture(scope="module")
def ids(smollm2) -> list[int]:
    text = play_text("tragedies/hamlet")[:4000]
    return [1] + smollm2.tokenizer(text, add_special_tokens=False).input_ids[:40]


def _incremental_and_fresh(proc: TemporalSpikeProcessor, ids: list[int]):
    cid, ref = proc.open(), proc.open()
    cuts = [0, 9, 13, 14, 21]
    inc = torch.cat(
        [
            proc([ids[a:b]], conversation_ids=[cid]).logits[0]
            for a, b in zip(cuts, cuts[1:], strict=False)
        ]
    )
    full = proc([ids[:21]], use_cache=False, conversation_ids=[ref]).logits[0]
    return inc, full


def test_verify_passes_on_a_full_mode_artifact(full_artifact, capsys):
    assert main(["verify", str(full_artifact), "--context", "32"]) == 0
    out = capsys.readouterr().out
    assert "10 of 10 checks passed" in out
    for name in ("incremental = full recompute", "batch = conversations alone"):
        row = next(r for r in out.splitlines() if r.startswith(f"{name} (spiking)"))
        assert "PASS" in row and "float64: max |d logit| 0," in row, row


def test_full_mode_cache_is_exact_in_float64(full_artifact, ids):
    """The graph has graded onset encoders; in float64 the cached turns and a from-scratch
    run give the same logits (rounding ~1e-16 never reaches a level boundary)."""
    art = load_artifact(full_artifact)
    assert art.graph.metadata["conversion"]["mode"] == "full"
    exact = TemporalSpikeProcessor(art, max_context_length=32, dtype=torch.float64)
    inc, full = _incremental_and_fresh(exact, ids)
    assert inc.dtype == torch.float64
    assert float((inc - full).abs().max()) <= 1e-9
    # Spiking off in float32, the deployment precision: only rounding, well within ATOL.
    plain = TemporalSpikeProcessor(art, max_context_length=32, spiking=False)
    inc32, full32 = _incremental_and_fresh(plain, ids)
    assert Agreement.of(inc32, full32).ok()
    # The float64 spiking logits are the float32 ones up to quantiser decisions: the same
    # argmax nearly everywhere, so the exact check is of the deployed function.
    spiking32 = TemporalSpikeProcessor(art, max_context_length=32)
    inc_s, _ = _incremental_and_fresh(spiking32, ids)
    assert Agreement.of(inc_s, inc.float()).top1 >= 0.9


def test_exact_check_fails_on_wrong_positions(full_artifact, ids):
    """The comparison can fail: the same tokens one position later are far outside ATOL."""
    exact = TemporalSpikeProcessor(full_artifact, max_context_length=32, dtype=torch.float64)
    inc, _ = _incremental_and_fresh(exact, ids)
    cid = exact.open()
    shifted = exact([[ids[0]] + ids[:21]], use_cache=False, conversation_ids=[cid]).logits[0, 1:]
    agree = Agreement.of(inc, shifted)
    assert not agree.ok() and agree.max_diff > 100 * ATOL


def test_processor_refuses_other_precisions(full_artifact):
    with pytest.raises(StacError, match="dtype"):
        TemporalSpikeProcessor(full_artifact, dtype=torch.float16)
