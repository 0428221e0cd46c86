"""`stac compile` end to end, the artifact it writes, and its handling of bad input."""

import json
import subprocess
import sys

import pytest

from stac.artifact import load_artifact
from stac.cli import main
from stac.sim.semantics import RunContext
from stac.sim.simulator import Simulator

ARTIFACT_FILES = {
    "model.stac.json",
    "model.stac.safetensors",
    "config.json",
    "tokenizer",
    "conversion_log.txt",
    "report.json",
    "report.md",
    "manifest.json",
    "profiles",
    ".stac-output",
}


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory, tiny_gpt2_dir):
    out = tmp_path_factory.mktemp("art") / "tiny"
    rc = main(
        [
            "compile",
            "--model",
            str(tiny_gpt2_dir),
            "--target",
            "loihi2-sim",
            "-T",
            "8",
            "--output-dir",
            str(out),
            "--calibration-passages",
            "2",
        ]
    )
    assert rc == 0
    return out


def test_artifact_has_every_file_and_reloads_without_pickle(tiny_artifact):
    assert {p.name for p in tiny_artifact.iterdir()} == ARTIFACT_FILES
    art = load_artifact(tiny_artifact)
    assert art.config["conversion"]["timesteps"] == 8
    assert art.config["family"] == "gpt2"
    ids = art.tokenizer()("To be, or not to be", return_tensors="pt").input_ids
    out, stats = Simulator(art.graph).run(RunContext(ids, steps=8))
    assert out["output"].shape == (1, ids.shape[1], art.graph.metadata["vocab_size"])
    assert sum(s.spikes for s in stats.values()) > 0


def test_report_json_is_per_token_and_splits_chip_from_host(tiny_artifact):
    report = json.loads((tiny_artifact / "report.json").read_text())
    total = report["total"]
    assert report["schema_version"] == 1 and report["target"] == "loihi2-sim"
    assert total["chip_dynamic_energy_j"] > 0 and total["host_energy_j"] > 0
    assert total["synops"] > 0 and total["spikes"] > 0 and total["cores"] >= 1
    assert 0 < total["spike_rate"] < 1
    layer_sum = sum(layer["synops"] for layer in report["layers"].values())
    assert layer_sum == pytest.approx(total["synops"])
    assert set(report["layers"]) == {"embed", "layer0", "layer1", "head"}
    log = (tiny_artifact / "conversion_log.txt").read_text()
    assert "spike-driven share of MACs" in log and "CausalSelfAttention" in log
    assert "backend_run" not in report  # the simulator's summary is None: it is the reference
    assert "## Lava run" not in (tiny_artifact / "report.md").read_text()


def _run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "stac.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--target", "loihi7-sim"],
            "unknown target 'loihi7-sim'; valid targets: loihi1-sim, "
            "loihi2-lava, loihi2-sim, spinnaker2-sim, truenorth-sim",
        ),
        (["-T", "0"], "outside the supported range 1..256"),
        (["-T", "500"], "outside the supported range 1..256"),
        (["--model", "/nonexistent/model/dir"], "could not load '/nonexistent/model/dir'"),
        (["--model", "distilgpt2"], "not in the local Hugging Face cache"),
        (["--prompt", "   "], "the prompt is empty"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    res = _run_cli("compile", "--output-dir", str(out), *args)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0, res.stderr
    assert res.stderr.startswith("stac: error: ") and message in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_existing_output_dir_needs_force(tiny_artifact, tiny_gpt2_dir):
    before = (tiny_artifact / "report.json").read_text()
    res = _run_cli("compile", "--model", str(tiny_gpt2_dir), "--output-dir", str(tiny_artifact))
    assert res.returncode == 2 and "exists; pass --force" in res.stderr
    assert (tiny_artifact / "report.json").read_text() == before


def test_force_replaces_and_leaves_no_partial_dirs(tmp_path, tiny_gpt2_dir):
    out = tmp_path / "a"
    for _ in range(2):
        assert (
            main(
                [
                    "compile",
                    "--model",
                    str(tiny_gpt2_dir),
                    "-T",
                    "4",
                    "--output-dir",
                    str(out),
                    "--calibration-passages",
                    "1",
                    "--force",
                ]
            )
            == 0
        )
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_default_compile_of_the_bundled_model(tmp_path, capsys):
    """The README's main job: the bundled SmolLM2 on loihi2-sim, report on stdout."""
    out = tmp_path / "smollm2"
    assert main(["compile", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "stac report: smollm2-135m on loihi2-sim (T=16" in printed
    assert "layer29" in printed and "spike-driven share of MACs" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["spike_driven_share"] > 0.95
    assert report["total"]["chips"] >= 2  # 135M 8-bit synapses do not fit one chip's cores
