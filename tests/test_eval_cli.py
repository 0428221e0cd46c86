"""`stac compile --mode full` and `stac eval` through the command line, on a tiny GPT-2."""

from __future__ import annotations

import json
import shutil

import pytest

from stac.cli import main


@pytest.fixture(scope="module")
def full_artifact(tmp_path_factory, tiny_gpt2_dir):
    out = tmp_path_factory.mktemp("full") / "tiny-full"
    rc = main(
        [
            "compile",
            "--model",
            str(tiny_gpt2_dir),
            "--mode",
            "full",
            "-T",
            "4",
            "--calibration-passages",
            "1",
            "--output-dir",
            str(out),
        ]
    )
    assert rc == 0
    return out


def test_full_mode_artifact_reports_its_coding(full_artifact):
    report = json.loads((full_artifact / "report.json").read_text())
    assert report["mode"] == "full"
    enc = report["encoders"]
    assert len(enc) == 2 * 4 + 1
    assert all(e["coding"] == "graded" and e["drive"] == "onset" for e in enc.values())
    assert all(e["bits_per_spike"] >= 8 and 0 < e["spike_rate"] <= 1 for e in enc.values())
    log = (full_artifact / "conversion_log.txt").read_text()
    assert "spike-driven share of MACs" in log and "bits/spike" in log
    assert "8-bit integers with one scale per output row" in log


def test_eval_writes_table_json_and_plot(full_artifact, tmp_path, capsys):
    js, png = tmp_path / "eval.json", tmp_path / "eval.png"
    rc = main(
        [
            "eval",
            str(full_artifact),
            "--timesteps",
            "4,2",
            "--json",
            str(js),
            "--plot",
            str(png),
            "--max-tokens",
            "400",
        ]
    )
    assert rc == 0
    doc = json.loads(js.read_text())
    assert doc["schema_version"] == 1 and doc["mode"] == "full"
    assert [r["timesteps"] for r in doc["results"]] == [2, 4]
    for r in doc["results"]:
        assert r["perplexity_ratio"] == pytest.approx(r["snn_perplexity"] / r["float_perplexity"])
        assert 0 <= r["top1_agreement"] <= 1 and r["mean_kl"] >= 0
        assert r["layer_spike_rates"] and r["bits_per_spike"] >= 8
    assert doc["scored_tokens"] == 3 * 127
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "top-1 agree" in out and "bits/spike" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--timesteps", "4,x"], "not an integer"),
        (["--timesteps", "0,4"], "outside"),
        (["--timesteps", "4,4"], "twice"),
        (["--text", "SHORT"], "one window of 128 needs 127"),
        (["--text", "MISSING"], "does not exist"),
    ],
)
def test_eval_bad_input_is_one_line_and_writes_nothing(
    full_artifact, tmp_path, capsys, args, message
):
    short = tmp_path / "short.txt"
    short.write_text("Too short a text.")
    args = [
        str(short) if a == "SHORT" else str(tmp_path / "nope.txt") if a == "MISSING" else a
        for a in args
    ]
    js = tmp_path / "e.json"
    rc = main(["eval", str(full_artifact), "--json", str(js), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("stac: error:") and message in err
    assert len(err.splitlines()) == 1
    assert not js.exists() and not any(tmp_path.glob(".e.json*"))


def test_eval_refuses_an_artifact_from_another_format(full_artifact, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(full_artifact, old)
    cfg = json.loads((old / "config.json").read_text())
    cfg["artifact_format"] = 0
    (old / "config.json").write_text(json.dumps(cfg))
    rc = main(["eval", str(old), "--json", str(tmp_path / "e.json")])
    assert rc == 2 and "recompile it" in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()


def test_full_mode_options_need_full_mode(capsys):
    rc = main(["compile", "--payload-bits", "4", "--output-dir", "/tmp/never-written"])
    assert rc == 2 and "--mode full only" in capsys.readouterr().err


def test_binary_chip_refuses_graded_full_mode(tiny_gpt2_dir, tmp_path, capsys):
    out = tmp_path / "l1"
    rc = main(
        [
            "compile",
            "--model",
            str(tiny_gpt2_dir),
            "--mode",
            "full",
            "-T",
            "4",
            "--calibration-passages",
            "1",
            "--target",
            "loihi1-sim",
            "--output-dir",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "--payload-bits 1" in err and not out.exists()
