"""Deployable bundles (``stac export --bundle``, ``stac run-bundle``) against stac's own run.

Two tiny models, a GPT-2 and a Llama shape (grouped-query attention, RoPE, RMSNorm, SwiGLU, an
untied LM head), are compiled for loihi2-sim in stac's default mode (simplified, spiking, T = 4)
and exported as bundles. The reference is stac's simulator on the same artifact (and, for
generation, the TemporalSpikeProcessor with its KV cache): every schedule step of the bundle is
fed the inputs the simulator recorded for it, and its chip steps (encoders and NIR parts, on
stac's step functions) must give bit-identical values, its host stages (ONNX on onnxruntime)
values within 1e-5 of each tensor's largest magnitude; the logits of the whole bundle run, and
of greedy generation with the cache, must agree to the same 1e-5.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import onnx
import pytest
import torch

from stac.artifact import IR_FILE, load_artifact, write_manifest
from stac.bundle.manifest import load_manifest
from stac.bundle.runner import Bundle, generate
from stac.cli import main
from stac.errors import StacError
from stac.ir import save
from stac.ir.nodes import AdEx, SignedIF
from stac.runtime.generate import generate as stac_generate
from stac.runtime.processor import TemporalSpikeProcessor
from stac.sim.semantics import SEMANTICS, RunContext
from stac.sim.simulator import Simulator

TOKENS = 16
REL = 1e-5


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def shape(request, tiny_gpt2_artifact, tiny_llama_artifact, tmp_path_factory):
    """(artifact, bundle written by the CLI) for each model shape."""
    art = tiny_gpt2_artifact if request.param == "gpt2" else tiny_llama_artifact
    out = tmp_path_factory.mktemp(f"bundle-{request.param}") / "bundle"
    assert main(["export", str(art), "--bundle", str(out)]) == 0
    return art, out


@pytest.fixture(scope="module")
def ids(hamlet_ids) -> torch.Tensor:
    return hamlet_ids[None, 300 : 300 + TOKENS]


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def recorded_run(graph: nir.NIRGraph, ids: torch.Tensor, steps: int):
    """stac's simulator on ``ids``, recording every node's output signal (by wrapping, not
    replacing, the reference semantics)."""
    seen = {}

    def recorder(node, inp, ctx, name, need):
        out, stats = SEMANTICS[type(node)](node, inp, ctx, name, need)
        seen[name] = out
        return out, stats

    sim = Simulator(graph, {name: recorder for name in graph.nodes})
    outputs, _ = sim.run(RunContext(ids, steps=steps))
    return outputs, seen


def test_bundle_files_are_valid_onnx_and_nir(shape):
    _, out = shape
    manifest = load_manifest(out)
    assert manifest["onnx_opset"] == 17 and manifest["timesteps"] == 4
    kinds = [s["run"] for s in manifest["schedule"]]
    assert kinds.count("encoder") == kinds.count("chip") == 9  # 4 maps per layer + LM head
    assert "netx" in manifest["lava"] and manifest["lava"]["note"]
    for step in manifest["schedule"]:
        if step["run"] == "host":
            model = onnx.load(str(out / step["file"]))
            onnx.checker.check_model(model, full_check=True)
            assert [o.version for o in model.opset_import if o.domain == ""] == [17]
        elif step["run"] == "chip":
            back = nir.read(out / step["file"], type_check=True)
            back.validate_structure()
    host_ops = {op for s in manifest["schedule"] if s["run"] == "host" for op in s["ops"].values()}
    assert {"CausalSelfAttention", "Embedding", "Residual"} <= host_ops


def test_each_step_equals_stac_simulator_on_its_recorded_inputs(shape, ids):
    """Chip steps bit for bit, host stages within 1e-5 relative, fed what the simulator fed
    the same nodes."""
    art, out = shape
    graph = load_artifact(art).graph
    bundle = Bundle(out)
    _, seen = recorded_run(graph, ids, bundle.steps)
    ctx = bundle.context(ids, torch.arange(TOKENS)[None])
    checked = {"host": 0, "encoder": 0, "chip": 0}
    for i, step in enumerate(bundle.manifest["schedule"]):
        values = dict(seen)  # every input as the simulator computed it
        produced = list(
            step["outputs"]
            if step["run"] == "host"
            else [step["name"]]
            if step["run"] == "encoder"
            else dict.fromkeys([*step["outputs"].values(), *step["nodes"]])
        )
        for name in produced:
            values.pop(name, None)
        bundle.run_step(i, ctx, values, bundle.empty_cache())
        for name in produced:
            if name not in graph.nodes or isinstance(graph.nodes[name], nir.Output):
                continue
            got, ref = values[name], seen[name]
            if step["run"] == "host":
                assert rel_err(got.mean(), ref.mean()) <= REL, (
                    name,
                    rel_err(got.mean(), ref.mean()),
                )
            else:
                assert got.per_step == ref.per_step and torch.equal(got.value, ref.value), name
            checked[step["run"]] += 1
    assert checked["encoder"] == checked["chip"] == 9 and checked["host"] >= 9


def test_bundle_logits_equal_stac_simulator(shape, ids):
    art, out = shape
    graph = load_artifact(art).graph
    bundle = Bundle(out)
    ref, _ = recorded_run(graph, ids, bundle.steps)
    got, cache = bundle.run(ids)
    assert set(got.values) <= set(bundle.manifest["logits"]["inputs"]) | {"output"}
    assert got.logits.shape == ref["output"].shape == (1, TOKENS, bundle.vocab_size)
    assert rel_err(got.logits, ref["output"]) <= REL
    assert {k.shape[2] for k, _ in cache.values()} == {TOKENS}


def test_greedy_generation_with_cache_equals_the_processor(shape, ids):
    art, out = shape
    processor = TemporalSpikeProcessor(art, max_context_length=64)
    processor.open(0)
    prompt = ids[0].tolist()
    ref_ids = stac_generate(processor, {0: prompt}, 5)[0]
    new, last_logits = generate(Bundle(out), prompt, 5)
    assert new == ref_ids
    # The processor's logits for the same feeds (prompt, then each picked token but the last).
    check = TemporalSpikeProcessor(art, max_context_length=64)
    feeds = [prompt] + [[t] for t in ref_ids[:-1]]
    for feed, got in zip(feeds, last_logits, strict=True):
        ref = check([feed], conversation_ids=None).logits[0, -1]
        assert rel_err(got, ref) <= REL


def test_run_bundle_cli_prints_the_greedy_continuation(shape, capsys):
    art, out = shape
    tok = load_artifact(art).tokenizer()
    prompt = "To be, or not to be"
    processor = TemporalSpikeProcessor(art, max_context_length=64)
    processor.open(0)
    ref_ids = stac_generate(processor, {0: tok(prompt).input_ids}, 4)[0]
    capsys.readouterr()
    assert main(["run-bundle", str(out), "--prompt", prompt, "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == tok.decode(ref_ids, skip_special_tokens=True)


def test_a_node_the_bundle_cannot_express_is_an_error_naming_it(
    tiny_gpt2_artifact, tmp_path, capsys
):
    art = tmp_path / "art"
    shutil.copytree(tiny_gpt2_artifact, art)
    graph = load_artifact(art).graph
    n = graph.nodes["layer0_act"].size
    ones = np.ones(n, np.float32)
    graph.nodes["layer0_act"] = AdEx(
        tau_m=ones, tau_w=ones, a=0 * ones, b=0 * ones, delta_t=0 * ones, v_th=ones,
        v_reset=0 * ones, v_rest=0 * ones, r=ones, v_peak=2 * ones,
    )  # fmt: skip
    save(graph, art / IR_FILE)
    write_manifest(art)  # resealed: a deliberate edit
    from stac.bundle.export import export_bundle

    with pytest.raises(StacError, match=r"node 'layer0_act' \(AdEx\) cannot be expressed"):
        export_bundle(art, tmp_path / "b1")
    assert main(["export", str(art), "--bundle", str(tmp_path / "b2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "layer0_act" in err[0] and "AdEx" in err[0]
    assert not (tmp_path / "b1").exists() and not (tmp_path / "b2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b")]  # no partial dirs


@pytest.fixture(scope="module")
def gpt2_bundle(tiny_gpt2_artifact, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpt2-bundle") / "bundle"
    assert main(["export", str(tiny_gpt2_artifact), "--bundle", str(out)]) == 0
    return out


def _first_encoder(manifest: dict, **fields) -> dict:
    """``manifest`` with ``fields`` set on its first encoder step."""
    schedule = list(manifest["schedule"])
    i = next(k for k, s in enumerate(schedule) if s["run"] == "encoder")
    schedule[i] = {**schedule[i], **fields}
    return {**manifest, "schedule": schedule}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda m: "{not json", "not JSON"),
        (lambda m: _first_encoder(m, gain_floor=2.0), "gain_floor is not a number in [0, 1]"),
        (lambda m: _first_encoder(m, gain_ratio=0), "gain_ratio is not a number in (0, 1]"),
        (lambda m: {**m, "version": 99}, "'version' is 99"),
        (lambda m: {**m, "schedule": []}, "'schedule' must be a non-empty list"),
        (
            lambda m: {**m, "schedule": m["schedule"][1:]},
            "reads 'layer0_attn_norm', which no earlier step produces",
        ),
        (
            lambda m: {**m, "schedule": [{**m["schedule"][0], "file": "host/gone.onnx"}]},
            "host/gone.onnx is not in the bundle",
        ),
        (
            lambda m: {**m, "schedule": [{**m["schedule"][0], "run": "gpu"}]},
            "schedule[0].run is 'gpu'",
        ),
    ],
)
def test_a_malformed_manifest_is_one_clear_error(gpt2_bundle, tmp_path, change, says, capsys):
    out = tmp_path / "bundle"
    shutil.copytree(gpt2_bundle, out)
    manifest = json.loads((out / "manifest.json").read_text())
    bad = change(manifest)
    (out / "manifest.json").write_text(bad if isinstance(bad, str) else json.dumps(bad))
    with pytest.raises(StacError, match="malformed manifest.json") as err:
        Bundle(out)
    assert says in str(err.value)
    capsys.readouterr()
    assert main(["run-bundle", str(out), "--prompt", "Hi", "--max-new-tokens", "1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "malformed manifest.json" in lines[0] and says in lines[0]


def test_the_runner_imports_no_compiler_and_no_transformers():
    code = (
        "import sys, stac.bundle.runner, stac.commands.run_bundle; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers' "
        "or m.startswith(('stac.frontend', 'stac.ir.passes', 'stac.artifact', 'onnx.'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_full_mode_bundle_with_graded_onset_encoders(tiny_gpt2_dir, tmp_path_factory, ids):
    """Full mode (graded payloads, onset drive, quantised weights): the encoders' other
    branch, against the simulator as above."""
    from stac.commands.compile import CompileRequest, compile_model
    from stac.frontend import ConversionConfig

    root = tmp_path_factory.mktemp("full")
    compile_model(
        CompileRequest(
            model=str(tiny_gpt2_dir),
            target="loihi2-sim",
            output_dir=root / "art",
            conversion=ConversionConfig(timesteps=4, calibration_passages=1, mode="full"),
        )
    )
    assert main(["export", str(root / "art"), "--bundle", str(root / "bundle")]) == 0
    bundle = Bundle(root / "bundle")
    encoders = [s for s in bundle.manifest["schedule"] if s["run"] == "encoder"]
    assert all(s["onset_drive"] and s["max_payload"] > 1 for s in encoders)
    ref, _ = recorded_run(load_artifact(root / "art").graph, ids, bundle.steps)
    got, _ = bundle.run(ids)
    assert rel_err(got.logits, ref["output"]) <= REL


def test_encoders_with_the_per_token_threshold_gain(tiny_gpt2_artifact, tmp_path, ids):
    """The simplified artifact with every encoder's host-side token gain switched on."""
    art = tmp_path / "art"
    shutil.copytree(tiny_gpt2_artifact, art)
    graph = load_artifact(art).graph
    for name, node in list(graph.nodes.items()):
        if isinstance(node, SignedIF):
            graph.nodes[name] = dataclasses.replace(node, token_gain=True)
    save(graph, art / IR_FILE)
    write_manifest(art)  # resealed: a deliberate edit
    assert main(["export", str(art), "--bundle", str(tmp_path / "bundle")]) == 0
    bundle = Bundle(tmp_path / "bundle")
    assert all(s["token_gain"] for s in bundle.manifest["schedule"] if s["run"] == "encoder")
    ref, _ = recorded_run(graph, ids, bundle.steps)
    got, _ = bundle.run(ids)
    assert rel_err(got.logits, ref["output"]) <= REL


def test_rotated_binary_encoders_with_a_step_per_token(tiny_llama_dir, tmp_path_factory, ids):
    """Full mode with --rotate (binary spikes): the host Rotation nodes as ONNX and encoders
    whose gain has no floor, against the simulator as above."""
    from stac.commands.compile import CompileRequest, compile_model
    from stac.frontend import ConversionConfig

    root = tmp_path_factory.mktemp("rotated")
    conversion = ConversionConfig(
        timesteps=4, calibration_passages=1, mode="full", payload_bits=1, rotate=True
    )
    compile_model(CompileRequest(str(tiny_llama_dir), "loihi2-sim", root / "art", conversion))
    assert main(["export", str(root / "art"), "--bundle", str(root / "bundle")]) == 0
    bundle = Bundle(root / "bundle")
    encoders = [s for s in bundle.manifest["schedule"] if s["run"] == "encoder"]
    assert encoders and all(s["token_gain"] and s["gain_floor"] == 0.0 for s in encoders)
    graph = load_artifact(root / "art").graph
    ref, _ = recorded_run(graph, ids, bundle.steps)
    got, _ = bundle.run(ids)
    assert rel_err(got.logits, ref["output"]) <= REL
