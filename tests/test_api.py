"""The public Python API (``stac.compile`` and ``CompiledModel``) against the CLI and transformers.

The model is ``tiny_gpt2_dir`` (a 2-layer GPT-2 with random weights); every figure the API gives
is checked against what the ``stac`` command writes for the same options, and the runtime's
logits against the Hugging Face model itself.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from transformers import GPT2LMHeadModel

import stac
from stac.cli import main
from stac.runtime import TemporalSpikeProcessor

T = 4
TEXT = (
    "Now is the winter of our discontent made glorious summer by this sun of York, and all "
    "the clouds that loured upon our house in the deep bosom of the ocean buried. "
) * 8


@pytest.fixture(scope="module")
def api_model(tmp_path_factory, tiny_gpt2_dir) -> stac.CompiledModel:
    """Compiled through the API, saved and loaded again."""
    compiled = stac.compile(
        str(tiny_gpt2_dir), target="loihi2-sim", timesteps=T, calibration_passages=1
    )
    saved = compiled.save_pretrained(tmp_path_factory.mktemp("api") / "tiny")
    return stac.CompiledModel.from_pretrained(saved)


@pytest.fixture(scope="module")
def cli_artifact(tmp_path_factory, tiny_gpt2_dir):
    out = tmp_path_factory.mktemp("cli") / "tiny"
    args = ["--model", str(tiny_gpt2_dir), "--target", "loihi2-sim", "-T", str(T)]
    assert main(["compile", *args, "--calibration-passages", "1", "--output-dir", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def ids(api_model) -> list[int]:
    tok = api_model.tokenizer()
    return [tok.bos_token_id, *tok(TEXT).input_ids[:23]]


def test_import_stac_does_not_load_torch():
    code = "import sys, stac; assert 'torch' not in sys.modules; print(stac.compile.__module__)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "stac.api"


def test_round_trip_gives_the_cli_artifacts_logits(api_model, cli_artifact, ids):
    assert (
        api_model.config["conversion"]
        == json.loads((cli_artifact / "config.json").read_text())["conversion"]
    )
    got = api_model.processor(max_context_length=64)([ids]).logits
    want = TemporalSpikeProcessor(cli_artifact, max_context_length=64)([ids]).logits
    assert got.shape == (1, len(ids), api_model.graph.metadata["vocab_size"])
    assert torch.equal(got, want)


def test_float_path_of_the_processor_is_near_the_transformers_model(api_model, tiny_gpt2_dir, ids):
    # The artifact is fitted to loihi2-sim, whose passes round the weights to its 8-bit width,
    # so the float path is the transformers model up to that rounding (about 1% here).
    got = api_model.processor(max_context_length=64, spiking=False)([ids]).logits
    with torch.no_grad():
        ref = GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir)(torch.tensor([ids])).logits
    assert float((got - ref).norm() / ref.norm()) <= 0.02
    assert float(ref.std()) > 0.1  # the comparison can fail


def test_output_object_reads_like_transformers(api_model, ids):
    proc = api_model.processor(max_context_length=64)
    out = proc([ids[:9]], conversation_ids=[proc.open("a")])
    assert out[0] is out.logits and out["logits"] is out.logits
    assert out.conversation_ids == ("a",)
    heads = 4  # tiny_gpt2_dir: n_head=4, n_embd=64
    caches = out.past_key_values[0]
    assert len(caches) == 2  # one attention node per layer
    for k, v in caches.values():
        assert k.shape == v.shape == (1, heads, 9, 64 // heads)
    with pytest.raises(KeyError):
        out["loss"]
    nxt = proc([ids[9:10]], conversation_ids=["a"])
    assert all(k.shape[2] == 10 for k, _ in nxt.past_key_values[0].values())


@pytest.mark.parametrize("levers", [False, True], ids=["plain", "levers"])
def test_report_gives_the_cli_figures(api_model, cli_artifact, tmp_path, levers):
    targets = ["loihi2", "spinnaker2", "h100"]
    options = {"batch": 4, "group": 2, "host_nodes": ["lm_head_in", "lm_head"]} if levers else {}
    got = api_model.report(targets, **options)
    out = tmp_path / "cli-report"
    flags = ["--batch", "4", "--group", "2", "--host-nodes", "lm_head_in,lm_head"] if levers else []
    assert (
        main(
            ["report", str(cli_artifact), "--targets", ",".join(targets), "--output-dir", str(out)]
            + flags
        )
        == 0
    )
    want = json.loads((out / "report.json").read_text())
    assert [t.target for t in got.targets] == [r["target"] for r in want["targets"]]
    for figures, row in zip(got.targets, want["targets"], strict=True):
        assert figures.error is None, figures.error
        assert figures.energy_j == row["total"]["energy_j"] > 0
        assert figures.latency_s == row["total"]["latency_s"] > 0
    assert got["loihi2"].cores == want["targets"][0]["total"]["cores"]
    assert got["h100"].kind == "dense" and got.baseline == "h100"
    assert got.data["host_nodes"] == (["lm_head", "lm_head_in"] if levers else [])


def test_evaluate_gives_the_cli_figures(api_model, cli_artifact, tiny_gpt2_dir, tmp_path):
    got = api_model.evaluate(TEXT, timesteps=[T], window=32, max_tokens=93)
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "eval",
                str(cli_artifact),
                "--text",
                str(text),
                "--timesteps",
                str(T),
                "--window",
                "32",
                "--max-tokens",
                "93",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    want = json.loads(out.read_text())["results"][0]
    (fid,) = got.results
    assert fid.timesteps == T and got.scored_tokens == 93
    for key in ("float_perplexity", "snn_perplexity", "top1_agreement", "mean_kl"):
        assert getattr(fid, key) == want[key], key
    # The float perplexity is transformers' own loss on the same three windows (BOS first).
    tok = api_model.tokenizer()
    body = tok(TEXT, return_tensors="pt").input_ids[0][:93].reshape(3, 31)
    windows = torch.cat([torch.full((3, 1), tok.bos_token_id), body], 1)
    with torch.no_grad():
        loss = GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir)(windows, labels=windows).loss
    assert math.isclose(fid.float_perplexity, math.exp(float(loss)), rel_tol=1e-4)


def test_unknown_option_is_an_error_naming_it(tiny_gpt2_dir):
    with pytest.raises(stac.StacError, match="unknown option.*weight_bitz"):
        stac.compile(str(tiny_gpt2_dir), weight_bitz=4)


def test_full_mode_options_refused_in_simplified_mode(tiny_gpt2_dir):
    with pytest.raises(stac.StacError, match="apply to --mode full only"):
        stac.compile(str(tiny_gpt2_dir), payload_bits=4)
