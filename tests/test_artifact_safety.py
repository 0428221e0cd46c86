"""The artifact is self-contained and verified; output directories are written safely.

Each hostile edit below is what a user (or an attacker) could do to an artifact on disk: when
the edit also rewrites the manifest (``_reseal``), the check behind the manifest is the one
under test.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from stac.artifact import (
    MANIFEST,
    check_manifest,
    load_artifact,
    source_digest,
    write_manifest,
)
from stac.cli import main
from stac.errors import StacError
from stac.files import MARKER, OWNER, writing
from stac.ir import load
from stac.profiles import PROFILE_DIR, host_profile, load_profile, load_profile_file

SAFETENSORS = "model.stac.safetensors"


def _copy(art: Path, tmp: Path, name: str = "art") -> Path:
    out = tmp / name
    shutil.copytree(art, out)
    return out


def _reseal(path: Path) -> None:
    """Rewrite the manifest after an edit, as someone tampering with the files would."""
    (path / MANIFEST).unlink()
    write_manifest(path)


def _edit_json(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("stac: error:") and len(err.splitlines()) == 1, err
    return err


# ----- paths named by the artifact ------------------------------------------------------------


@pytest.mark.parametrize("target", ["../outside.safetensors", "/etc/passwd", "sub/x", ".."])
def test_tensors_path_outside_the_artifact_is_refused(tiny_gpt2_artifact, tmp_path, target):
    art = _copy(tiny_gpt2_artifact, tmp_path)
    shutil.copy(art / SAFETENSORS, tmp_path / "outside.safetensors")
    _edit_json(art / "model.stac.json", lambda d: d.update(tensors=target))
    _reseal(art)
    with pytest.raises(StacError, match="field 'tensors'"):
        load_artifact(art)


def test_tensors_file_that_is_a_symlink_is_refused(tiny_gpt2_artifact, tmp_path):
    art = _copy(tiny_gpt2_artifact, tmp_path)
    (art / "tensors.link").symlink_to(tmp_path / "elsewhere.safetensors")
    shutil.copy(art / SAFETENSORS, tmp_path / "elsewhere.safetensors")
    _edit_json(art / "model.stac.json", lambda d: d.update(tensors="tensors.link"))
    with pytest.raises(StacError, match="symbolic link"):  # the artifact holds no links
        load_artifact(art)
    with pytest.raises(ValueError, match="field 'tensors'.*symbolic link"):  # the IR alone
        load(art / "model.stac.json")


@pytest.mark.parametrize("target", ["../loihi2.toml", "/etc/passwd", "profiles/../config.json"])
def test_profile_path_outside_the_artifact_is_refused(tiny_gpt2_artifact, tmp_path, target):
    art = _copy(tiny_gpt2_artifact, tmp_path)
    shutil.copy(PROFILE_DIR / "loihi2.toml", tmp_path / "loihi2.toml")
    _edit_json(art / "config.json", lambda d: d["profiles"].update(chip=target))
    _reseal(art)
    with pytest.raises(StacError, match="field 'profiles.chip'"):
        load_artifact(art)


def test_ir_file_path_outside_the_artifact_is_refused(tiny_gpt2_artifact, tmp_path):
    art = _copy(tiny_gpt2_artifact, tmp_path)
    _edit_json(art / "config.json", lambda d: d.update(ir_file="../../model.stac.json"))
    _reseal(art)
    with pytest.raises(StacError, match="field 'ir_file'"):
        load_artifact(art)


def test_a_bare_graph_is_priced_on_a_bundled_profile_name_only(tiny_gpt2_artifact):
    from stac.ir.results import partition_of
    from stac.profiles import load_bundled

    graph = load_artifact(tiny_gpt2_artifact).graph
    assert partition_of(graph).profile == "loihi2"
    for name in ("../../etc/passwd", "/etc/passwd", "x.toml", "no-such-profile"):
        with pytest.raises(StacError, match="profile"):
            load_bundled(name)


@pytest.mark.parametrize("host", ["/etc/passwd", "../host-cpu", "host-cpu.toml"])
def test_profile_host_must_be_a_name(tmp_path, host):
    text = (PROFILE_DIR / "loihi2.toml").read_text().replace('"host-cpu"', json.dumps(host))
    (tmp_path / "chip.toml").write_text(text)
    with pytest.raises(StacError, match="field 'host'"):
        host_profile(load_profile_file(tmp_path / "chip.toml"))


def test_profile_host_resolves_beside_the_profile_then_bundled(tmp_path):
    chip = (PROFILE_DIR / "loihi2.toml").read_text().replace('"host-cpu"', '"my-host"')
    (tmp_path / "chip.toml").write_text(chip)
    host = (PROFILE_DIR / "host-cpu.toml").read_text().replace('"host-cpu"', '"my-host"')
    (tmp_path / "my-host.toml").write_text(host)
    assert host_profile(load_profile_file(tmp_path / "chip.toml")).path == tmp_path / "my-host.toml"
    (tmp_path / "my-host.toml").unlink()
    with pytest.raises(StacError, match="unknown host profile 'my-host'"):
        host_profile(load_profile_file(tmp_path / "chip.toml"))


# ----- the manifest ---------------------------------------------------------------------------


def test_manifest_lists_every_file_with_its_sha256(tiny_gpt2_artifact):
    import hashlib

    manifest = json.loads((tiny_gpt2_artifact / MANIFEST).read_text())
    on_disk = {
        p.relative_to(tiny_gpt2_artifact).as_posix()
        for p in tiny_gpt2_artifact.rglob("*")
        if p.is_file() and p.name != MANIFEST
    }
    assert set(manifest["files"]) == on_disk
    assert MARKER in on_disk and "profiles/loihi2.toml" in on_disk
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((tiny_gpt2_artifact / rel).read_bytes()).hexdigest() == digest


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda a: (a / "report.md").write_text("changed\n"), "report.md was changed"),
        (lambda a: (a / "conversion_log.txt").unlink(), "conversion_log.txt listed"),
        (
            lambda a: (a / "tokenizer" / "extra.json").write_text("{}"),
            "tokenizer/extra.json is not",
        ),
        (lambda a: (a / "profiles" / "loihi2.toml").write_text("x"), "profiles/loihi2.toml was"),
        (lambda a: (a / MANIFEST).write_text("[1]"), "not a stac manifest"),
        (lambda a: (a / MANIFEST).unlink(), "no manifest.json"),
    ],
)
def test_a_changed_missing_or_extra_file_is_named(tiny_gpt2_artifact, tmp_path, edit, message):
    art = _copy(tiny_gpt2_artifact, tmp_path)
    check_manifest(art)
    edit(art)
    with pytest.raises(StacError, match=message):
        load_artifact(art)


def test_nan_weights_are_refused_at_load_by_every_command(tiny_gpt2_artifact, tmp_path, capsys):
    art = _copy(tiny_gpt2_artifact, tmp_path)
    arrays = load_file(str(art / SAFETENSORS))
    key = next(k for k, v in arrays.items() if v.dtype.kind == "f" and v.ndim == 2)
    arrays[key][0, 0] = np.nan
    save_file(arrays, str(art / SAFETENSORS))
    _reseal(art)
    with pytest.raises(StacError, match=f"array '{key}' has 1 non-finite"):
        load_artifact(art)
    for argv in (
        ["chat", str(art), "--prompt", "hi", "--max-new-tokens", "1"],
        ["eval", str(art), "--timesteps", "4", "--max-tokens", "200"],
        ["report", str(art), "--output-dir", str(tmp_path / "r")],
        ["export-nir", str(art), "--output", str(tmp_path / "x.nir")],
    ):
        assert main(argv) == 2
        assert key in _one_error(capsys)
    assert not (tmp_path / "r").exists() and not (tmp_path / "x.nir").exists()


def test_a_tensor_of_the_wrong_shape_or_dtype_is_named(tiny_gpt2_artifact, tmp_path):
    art = _copy(tiny_gpt2_artifact, tmp_path)
    arrays = load_file(str(art / SAFETENSORS))
    key = next(k for k, v in arrays.items() if v.ndim == 2 and v.dtype == np.float32)
    arrays[key] = arrays[key][:, :-1].copy()
    save_file(arrays, str(art / SAFETENSORS))
    _reseal(art)
    with pytest.raises(StacError, match=f"array '{key}' is float32 .* declares float32"):
        load_artifact(art)
    arrays[key] = load_file(str(tiny_gpt2_artifact / SAFETENSORS))[key].astype(np.float64)
    save_file(arrays, str(art / SAFETENSORS))
    _reseal(art)
    with pytest.raises(StacError, match=f"array '{key}' is float64"):
        load_artifact(art)


def test_a_truncated_tensors_file_is_one_error(tiny_gpt2_artifact, tmp_path, capsys):
    art = _copy(tiny_gpt2_artifact, tmp_path)
    data = (art / SAFETENSORS).read_bytes()
    (art / SAFETENSORS).write_bytes(data[: len(data) // 2])
    _reseal(art)
    assert main(["export-nir", str(art), "--output", str(tmp_path / "x.nir")]) == 2
    assert "not a readable safetensors file" in _one_error(capsys)


# ----- eval's source model --------------------------------------------------------------------


def test_eval_refuses_a_source_model_that_is_not_the_recorded_one(
    tiny_gpt2_artifact, tiny_gpt2_dir, tmp_path, capsys
):
    import torch
    from transformers import GPT2LMHeadModel

    config = json.loads((tiny_gpt2_artifact / "config.json").read_text())
    model = GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir)
    assert config["source_weights_sha256"] == source_digest(model)
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[0, 0] += 1e-3
    other = tmp_path / "other-model"
    model.save_pretrained(other)
    shutil.copytree(
        tiny_gpt2_dir,
        other,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("*.safetensors", "config.json"),
    )
    art = _copy(tiny_gpt2_artifact, tmp_path)
    _edit_json(art / "config.json", lambda d: d.update(source_model=str(other)))
    _reseal(art)
    assert main(["eval", str(art), "--timesteps", "4", "--max-tokens", "200"]) == 2
    err = _one_error(capsys)
    assert str(other) in err and config["source_weights_sha256"][:16] in err
    assert source_digest(model)[:16] in err


# ----- determinism ----------------------------------------------------------------------------


def test_two_compiles_write_byte_identical_files(tiny_gpt2_dir, tmp_path):
    from stac.commands.compile import CompileRequest, compile_model
    from stac.frontend import ConversionConfig

    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        compile_model(
            CompileRequest(
                model=str(tiny_gpt2_dir),
                target="loihi2-sim",
                output_dir=out,
                conversion=ConversionConfig(timesteps=4, calibration_passages=1),
            )
        )
        outs.append(out)
    a, b = (json.loads((o / MANIFEST).read_text()) for o in outs)
    assert a["files"] == b["files"] and len(a["files"]) > 8
    for rel in a["files"]:
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel
    assert a["compile_seconds"] > 0 and "compile_seconds" not in json.loads(
        (outs[0] / "report.json").read_text()
    )


# ----- the profile copy -----------------------------------------------------------------------


def test_chat_and_report_price_with_the_artifacts_profile_copy(tiny_gpt2_dir, tmp_path):
    """A user's profile named like a bundled one (loihi2) but with 10x the static power: the
    artifact is priced with the copy even after the user's file is gone."""
    from stac.commands.compile import CompileRequest, compile_model
    from stac.commands.report import report_artifact
    from stac.frontend import ConversionConfig
    from stac.runtime.chat import ChatSession
    from stac.runtime.processor import TemporalSpikeProcessor
    from stac.runtime.generate import Sampler

    bundled = load_profile("loihi2")
    text = (PROFILE_DIR / "loihi2.toml").read_text()
    old = f"static_power_w = {{ value = {bundled.get('chip', 'static_power_w')}"
    assert old in text
    user = tmp_path / "mine" / "loihi2.toml"
    user.parent.mkdir()
    user.write_text(text.replace(old, f"static_power_w = {{ value = {10 * 0.282}"))
    art = tmp_path / "art"
    compile_model(
        CompileRequest(
            model=str(tiny_gpt2_dir),
            target=f"{user}:sim",
            output_dir=art,
            conversion=ConversionConfig(timesteps=4, calibration_passages=1),
        )
    )
    shutil.rmtree(user.parent)  # the user's file is gone; the artifact's copy remains

    def turn(model):
        proc = TemporalSpikeProcessor(model, max_context_length=64)
        artifact = load_artifact(art)
        session = ChatSession(proc, artifact.tokenizer(), None, Sampler(), 2)
        list(session.turn("Hello"))
        return session.last.energy

    copy, plain = turn(str(art)), turn(load_artifact(art).graph)  # a bare graph: bundled
    assert copy.chip_dynamic_j == pytest.approx(plain.chip_dynamic_j, rel=1e-12)
    assert copy.chip_static_j == pytest.approx(10 * plain.chip_static_j, rel=1e-9)

    rep = report_artifact(art, ["loihi2"], tmp_path / "rep", baseline="h100")
    row = next(r for r in rep["targets"] if r["target"] == "loihi2")
    static = row["total"]["chip_static_energy_j"]
    rep_b = report_artifact(art, ["loihi1"], tmp_path / "rep2", baseline="h100")
    assert static > 0 and "loihi1" in [r["target"] for r in rep_b["targets"]]
    compiled = json.loads((art / "report.json").read_text())["total"]["chip_static_energy_j"]
    assert static == pytest.approx(compiled, rel=1e-9)  # the copy, as at compile time


# ----- writing output directories -------------------------------------------------------------


def test_force_replaces_only_a_directory_stac_wrote(tmp_path):
    mine = tmp_path / "docs"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(StacError, match="not written by stac"):
        with writing(mine, force=True):
            pass
    assert (mine / "notes.txt").read_text() == "keep me"
    with writing(tmp_path / "out", force=False) as tmp:
        (tmp / "a.txt").write_text("1")
    with writing(tmp_path / "out", force=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER, "b.txt"]


def test_import_nir_force_refuses_a_users_directory(tmp_path, capsys):
    docs = tmp_path / "mydocs"
    docs.mkdir()
    (docs / "thesis.tex").write_text("years of work")
    nir_file = Path(__file__).parent / "data" / "nir_paper"
    candidates = sorted(nir_file.rglob("*.nir"))
    assert candidates
    rc = main(
        [
            "import-nir",
            str(candidates[0]),
            "--target",
            "loihi2-sim",
            "--output-dir",
            str(docs),
            "--force",
        ]
    )
    assert rc == 2 and "not written by stac" in _one_error(capsys)
    assert (docs / "thesis.tex").read_text() == "years of work"


def test_report_into_the_artifact_it_reads_is_refused_before_work(
    tiny_gpt2_artifact, tmp_path, capsys
):
    art = _copy(tiny_gpt2_artifact, tmp_path)
    before = {p: p.read_bytes() for p in art.rglob("*") if p.is_file()}
    started = time.perf_counter()
    for out in (art, art / "sub", tmp_path):
        assert main(["report", str(art), "--output-dir", str(out), "--force"]) == 2
        assert "which this command reads" in _one_error(capsys)
    assert time.perf_counter() - started < 5
    assert {p: p.read_bytes() for p in art.rglob("*") if p.is_file()} == before


def test_backups_have_unique_names_and_leave_a_users_old_directory_alone(tmp_path):
    out = tmp_path / "out"
    old = tmp_path / ".out.old"
    old.mkdir()
    (old / "mine.txt").write_text("mine")
    for i in range(3):
        with writing(out, force=True) as tmp:
            (tmp / "i.txt").write_text(str(i))
    assert (old / "mine.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.old", "out"]
    assert (out / "i.txt").read_text() == "2"


def _writer(path: str, tag: str, rounds: int, errors) -> None:
    for i in range(rounds):
        try:
            with writing(Path(path), force=True) as tmp:
                (tmp / "sub").mkdir()
                for k in range(5):
                    (tmp / "sub" / f"{k}.txt").write_text(f"{tag}{i}")
        except Exception as exc:  # what the test counts: any exception is a failure
            errors.put(f"{type(exc).__name__}: {exc}")


def test_two_concurrent_writers_into_one_directory(tmp_path):
    out = tmp_path / "out"
    with writing(out, force=False):
        pass
    ctx = multiprocessing.get_context("spawn")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(out), t, 150, errors)) for t in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    texts = {(out / "sub" / f"{k}.txt").read_text() for k in range(5)}
    assert len(texts) == 1  # one writer's complete directory, never a mix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no backups or partials


def test_a_writer_without_force_losing_the_race_gets_one_clear_error(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(StacError, match="created by another command while this one ran"):
        with writing(out, force=False) as tmp:
            (tmp / "x").write_text("late")
            with writing(out, force=False) as other:
                (other / "x").write_text("first")
    assert (out / "x").read_text() == "first"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _partial(parent: Path, name: str, marker: bool, pid: int, age_s: float) -> Path:
    p = parent / name
    (p / "deep").mkdir(parents=True)
    (p / "deep" / "big.bin").write_bytes(b"0" * 1000)
    import socket

    (p / OWNER).write_text(f"{socket.gethostname()} {pid}\n")
    if marker:
        (p / MARKER).write_text("x")
    t = time.time() - age_s
    os.utime(p, (t, t))
    return p


def test_stale_partials_are_cleaned_at_the_next_write(tmp_path):
    dead = _dead_pid()
    stale = _partial(tmp_path, ".out.partial-abc123", True, dead, 60)
    unmarked = _partial(tmp_path, ".out.partial-def456", False, dead, 60)
    alive = _partial(tmp_path, ".out.partial-ghi789", True, os.getpid(), 60)
    other = _partial(tmp_path, ".other.partial-abc123", True, dead, 60)
    odd = _partial(tmp_path, ".out.partial-x.y", True, dead, 60)
    with writing(tmp_path / "out", force=False):
        pass
    assert not stale.exists()
    assert unmarked.exists() and alive.exists() and other.exists() and odd.exists()


def test_output_is_written_with_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        with writing(tmp_path / "out", force=False) as tmp:
            (tmp / "d").mkdir()
            (tmp / "d" / "f.txt").write_text("x")
    finally:
        os.umask(mask)
    out = tmp_path / "out"
    assert (out.stat().st_mode & 0o777) == 0o755
    assert ((out / "d").stat().st_mode & 0o777) == 0o755
    assert ((out / "d" / "f.txt").stat().st_mode & 0o777) == 0o644
    assert ((out / MARKER).stat().st_mode & 0o777) == 0o644


def test_unwritable_output_fails_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    started = time.perf_counter()
    # the model does not exist either: the output is checked first, so that is the error
    rc = main(
        ["compile", "--model", str(tmp_path / "missing"), "--output-dir", str(blocker / "out")]
    )
    assert rc == 2 and "is not a directory" in _one_error(capsys)
    rc = main(["eval", str(tmp_path / "missing-art"), "--json", str(blocker / "e.json")])
    assert rc == 2
    assert time.perf_counter() - started < 5


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_parent_fails_before_any_work(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc = main(["compile", "--model", str(tmp_path / "missing"), "--output-dir", str(ro / "o")])
        assert rc == 2 and "not writable" in _one_error(capsys)
    finally:
        ro.chmod(0o755)


def test_a_bare_ir_file_naming_tensors_elsewhere_is_one_error(tiny_gpt2_artifact, tmp_path, capsys):
    ir = tmp_path / "g.stac.json"
    shutil.copy(tiny_gpt2_artifact / "model.stac.json", ir)
    _edit_json(ir, lambda d: d.update(tensors="/etc/passwd"))
    assert main(["export-nir", str(ir), "--output", str(tmp_path / "x.nir")]) == 2
    assert "field 'tensors'" in _one_error(capsys)


def test_eval_output_inside_the_artifact_is_refused(tiny_gpt2_artifact, tmp_path, capsys):
    art = _copy(tiny_gpt2_artifact, tmp_path)
    before = (art / "config.json").read_bytes()
    rc = main(["eval", str(art), "--json", str(art / "config.json"), "--force"])
    assert rc == 2 and "which this command reads" in _one_error(capsys)
    assert (art / "config.json").read_bytes() == before
