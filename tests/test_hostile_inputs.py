"""Hostile and mistaken input (issue 16, the input half): validated before work starts, sizes
bounded by a memory budget, every failure one ``stac: error:`` line and never a traceback.

Profiles are mutated with hypothesis; signals and a few failures run the real ``stac`` command
line in a subprocess; the rest call :func:`stac.cli.main` in-process (the same code, minus
the interpreter's start-up).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stac.cli import main
from stac.artifact import write_manifest
from stac.errors import StacError
from stac.eval import Fidelity
from stac.frontend.models import load_model
from stac.ir import make_graph
from stac.ir.nodes import SignedIF
from stac.ir.passes import run_passes
from stac.ir.results import issues_of
from stac.limits import MEMORY_BUDGET_ENV, check_bytes, memory_budget, physical_memory
from stac.profiles import PROFILE_DIR, load_profile_file
from stac.reporting.fidelity import figure

ROOT = Path(__file__).resolve().parents[1]
LOIHI2 = (PROFILE_DIR / "loihi2.toml").read_text()
H100 = (PROFILE_DIR / "h100.toml").read_text()


def _one_error_line(err: str, message: str) -> None:
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("stac: error: "), err
    assert message in err, err


def _main(capsys, *args: str) -> tuple[int, str]:
    rc = main(list(args))
    return rc, capsys.readouterr().err


# --- profiles --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace('name = "loihi2"', "name = 123"), "field 'name' must be a name"),
        (
            lambda t: t.replace('name = "loihi2"', 'name = "../../evil"'),
            "field 'name' must be a name",
        ),
        (
            lambda t: t.replace("description = ", "description = [1, 2]\nx_description = "),
            "field 'description' must be text",
        ),
        (
            lambda t: t.replace('host = "host-cpu"', 'host = "/etc/passwd"'),
            "field 'host' must be a profile name or a .toml profile file",
        ),
        (
            lambda t: t.replace("tiles_x = { value = 8", "tiles_x = { value = 100000").replace(
                "tiles_y = { value = 4", "tiles_y = { value = 100000"
            ),
            "field 'mesh' holds 40000000000 cores (tiles_x x tiles_y x cores_per_tile), above "
            "the limit of 1048576",
        ),
        (
            lambda t: t.replace("max_chips = { value = 1152", "max_chips = { value = 10000000"),
            "field 'chip.max_chips' must be at most 1048576",
        ),
        (
            lambda t: t.replace("synop = { value = 35.5", "synop = { value = 1e300"),
            "field 'energy_pj.synop' must be at most 1e+15",
        ),
        (lambda t: t.replace("schema = 1", "schema = true"), "schema True is not supported"),
    ],
)
def test_profile_fields_are_type_checked_and_bounded(tmp_path, edit, message):
    path = tmp_path / "bad.toml"
    text = edit(LOIHI2)
    assert text != LOIHI2
    path.write_text(text)
    with pytest.raises(StacError, match=re.escape(message)):
        load_profile_file(path)


def test_a_profile_that_is_a_device_or_huge_is_refused_unread(tmp_path):
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (2 << 20))
    with pytest.raises(StacError, match="larger than"):
        load_profile_file(big)
    with pytest.raises(StacError, match="not a regular file"):
        load_profile_file("/dev/zero")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


def _toml(doc: dict[str, Any]) -> str:
    """A minimal TOML writer: scalars first, then one ``[table]`` per dict of the top level."""
    lines = [
        f"{json.dumps(k)} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)
    ]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"[{json.dumps(k)}]")
            lines += [f"{json.dumps(kk)} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    return out


HOSTILE = [
    0,
    -1,
    -(2**40),
    2**62,
    1e308,
    -1e-300,
    math.nan,
    math.inf,
    -math.inf,
    0.5,
    True,
    "8",
    [],
    {},
]


@st.composite
def _mutated(draw) -> str:
    doc = tomllib.loads(draw(st.sampled_from([LOIHI2, H100])))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(st.sampled_from(HOSTILE))
    return _toml(doc)


@settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=_mutated())
def test_a_mutated_profile_loads_or_raises_stac_error_only(tmp_path, text):
    path = tmp_path / "mutated.toml"
    path.write_text(text)
    try:
        load_profile_file(path)
    except StacError:
        pass


def test_the_toml_writer_of_these_tests_round_trips_the_bundled_profiles():
    for text in (LOIHI2, H100):
        assert tomllib.loads(_toml(tomllib.loads(text))) == tomllib.loads(text)


# --- the memory budget -----------------------------------------------------------------------


def test_the_budget_is_half_the_memory_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv(MEMORY_BUDGET_ENV, raising=False)
    pages = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < physical_memory() <= pages
    assert memory_budget() == int(0.5 * physical_memory())
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "0.25")
    assert memory_budget() == int(0.25 * physical_memory())
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "512M")
    assert memory_budget() == 512 * 2**20
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "2GiB")
    assert memory_budget() == 2 * 2**30
    with pytest.raises(StacError, match="needs 4.0 GiB, above stac's memory budget of 2.0 GiB"):
        check_bytes("the field x", 4 * 2**30)
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "lots")
    with pytest.raises(StacError, match="neither a fraction"):
        memory_budget()


def _nir(path: Path, shape: tuple[int, ...], weight: bool = False) -> Path:
    nodes: dict[str, Any] = {
        "input": nir.Input(np.array(shape)),
        "output": nir.Output(np.array(shape)),
    }
    edges = [("input", "output")]
    if weight:
        nodes["lin"] = nir.Linear(weight=np.ones((shape[0], shape[0]), np.float32))
        edges = [("input", "lin"), ("lin", "output")]
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=edges))
    return path


def test_import_nir_steps_are_bounded(tmp_path, capsys):
    src = _nir(tmp_path / "small.nir", (3,))
    out = tmp_path / "o"
    for steps in ("0", "-1", "1000000000"):
        rc, err = _main(capsys, "import-nir", str(src), "--steps", steps, "--output-dir", str(out))
        assert rc == 2
        _one_error_line(err, f"--steps must be in 1..1000000, got {steps}")
    with pytest.raises(SystemExit) as exit_:
        main(["import-nir", str(src), "--steps", "1e9", "--output-dir", str(out)])
    assert exit_.value.code == 2
    _one_error_line(capsys.readouterr().err, "argument --steps: must be an integer, got '1e9'")
    assert not out.exists()


def test_declared_nir_sizes_are_checked_before_allocation(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "1G")
    big_input = _nir(tmp_path / "in.nir", (100_000, 100_000))
    rc, err = _main(
        capsys, "import-nir", str(big_input), "--steps", "1", "--output-dir", str(tmp_path / "o")
    )
    assert rc == 2
    _one_error_line(err, "node 'input' shape (100000, 100000) declares 10,000,000,000 elements")
    weights = _nir(tmp_path / "w.nir", (3,), weight=True)
    with h5py.File(weights, "r+") as f:  # a 60000 x 60000 weight, stored as empty chunks
        del f["node/nodes/lin/weight"]
        f["node/nodes/lin"].create_dataset(
            "weight", shape=(60_000, 60_000), dtype="f4", chunks=(1000, 1000)
        )
    assert weights.stat().st_size < 1 << 20
    rc, err = _main(
        capsys, "import-nir", str(weights), "--steps", "1", "--output-dir", str(tmp_path / "o")
    )
    assert rc == 2
    _one_error_line(err, "the largest 'node/nodes/lin/weight' of shape (60000, 60000), 13.4 GiB")
    rc, err = _main(capsys, "export-nir", str(weights), "--output", str(tmp_path / "x.nir"))
    assert rc == 2 and "'node/nodes/lin/weight' of shape (60000, 60000)" in err
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "1M")  # 300000 steps x 2 nodes x 3 x 4 bytes
    rc, err = _main(
        capsys,
        "import-nir",
        str(_nir(tmp_path / "s.nir", (3,))),
        "--steps",
        "300000",
        "--output-dir",
        str(tmp_path / "o"),
    )
    assert rc == 2
    _one_error_line(err, "the run of --steps 300000 (batch 1) over 2 node(s)")
    assert "needs 6.9 MiB, above stac's memory budget of 1.0 MiB" in err
    assert not (tmp_path / "o").exists()


def test_a_long_prompt_is_refused_before_calibrating(tmp_path, capsys, tiny_gpt2_dir):
    started = time.perf_counter()
    rc, err = _main(
        capsys,
        "compile",
        "--model",
        str(tiny_gpt2_dir),
        "--prompt",
        "word " * 20_000,
        "--output-dir",
        str(tmp_path / "o"),
    )
    assert rc == 2
    _one_error_line(err, "past the model's context of 256")
    assert time.perf_counter() - started < 60 and not (tmp_path / "o").exists()


# --- artifacts and models: one line, exit 2 ----------------------------------------------------


@pytest.fixture
def artifact_copy(tmp_path, tiny_gpt2_artifact) -> Path:
    out = tmp_path / "art"
    shutil.copytree(tiny_gpt2_artifact, out)
    return out


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda a: (a / "config.json").write_text("{not json"), "config.json is not readable JSON"),
        (lambda a: (a / "config.json").write_text("[1, 2]"), "config.json must hold a JSON object"),
        (lambda a: shutil.rmtree(a / "tokenizer"), "tokenizer directory"),
        (
            lambda a: _edit_json(
                a / "tokenizer" / "tokenizer_config.json",
                lambda d: d.update(auto_map={"AutoTokenizer": ["evil.Tok", None]}),
            ),
            "asks for the model repository's own code (auto_map)",
        ),
        (
            lambda a: _edit_json(
                a / "model.stac.json", lambda d: d["metadata"]["__dict__"].update(max_positions=-5)
            ),
            "the artifact's max_positions is -5; it must be an integer in 1..",
        ),
    ],
)
def test_a_damaged_artifact_is_one_error_line(capsys, artifact_copy, damage, message):
    damage(artifact_copy)
    if "JSON" not in message:  # resealed: the damage must be caught on its own
        write_manifest(artifact_copy)
    rc, err = _main(capsys, "chat", str(artifact_copy), "--prompt", "hello")
    assert rc == 2
    _one_error_line(err, message)


def test_nan_weights_are_refused_by_chat_eval_and_report(tmp_path, capsys, artifact_copy):
    from safetensors.numpy import load_file, save_file

    tensors = artifact_copy / "model.stac.safetensors"
    arrays = load_file(tensors)
    arrays["layer0_fc.weight"][...] = np.nan
    save_file(arrays, tensors)
    write_manifest(artifact_copy)  # resealed: the NaN must be caught on its own
    for args in (
        ("chat", str(artifact_copy), "--prompt", "hello"),
        ("eval", str(artifact_copy), "--timesteps", "4", "--max-tokens", "300"),
        ("report", str(artifact_copy), "--output-dir", str(tmp_path / "r")),
    ):
        rc, err = _main(capsys, *args)
        assert rc == 2, args
        _one_error_line(err, "array 'layer0_fc.weight' has")


def test_report_without_a_conversion_key_is_one_line(tmp_path, capsys, artifact_copy):
    _edit_json(artifact_copy / "config.json", lambda d: d.pop("conversion"))
    write_manifest(artifact_copy)
    rc, err = _main(capsys, "report", str(artifact_copy), "--output-dir", str(tmp_path / "r"))
    assert rc == 2
    _one_error_line(err, "has no valid conversion.timesteps")


@pytest.mark.parametrize(
    "args, message",
    [
        (("chat", "--temperature", "nan"), "--temperature must be >= 0 and finite, got nan"),
        (("chat", "--temperature", "-1"), "--temperature must be >= 0 and finite, got -1.0"),
        (("chat", "--max-new-tokens", "0"), "--max-new-tokens must be at least 1, got 0"),
        (("chat", "--context", "-5"), "--context must be at least 1 token, got -5"),
        (("eval", "--max-tokens", "0"), "--max-tokens 0 is less than one window: --window 128"),
    ],
)
def test_bad_options_are_refused_before_the_artifact_is_read(capsys, tmp_path, args, message):
    rc, err = _main(capsys, args[0], str(tmp_path / "no-such-artifact"), *args[1:])
    assert rc == 2
    _one_error_line(err, message)


def test_a_missing_path_and_an_uncached_hub_id_fail_at_once(monkeypatch):
    with pytest.raises(StacError, match="could not load '/no/such/model': the path does not exist"):
        load_model("/no/such/model")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("STAC_HUB_DOWNLOAD", raising=False)
    started = time.perf_counter()
    with pytest.raises(
        StacError, match="not in the local Hugging Face cache and downloads are off"
    ):
        load_model("some-org/some-model")
    assert time.perf_counter() - started < 10  # no network wait (it was ~50 s)


def test_a_model_directory_asking_for_remote_code_is_refused(tmp_path, tiny_gpt2_dir):
    model = tmp_path / "m"
    shutil.copytree(tiny_gpt2_dir, model)
    _edit_json(model / "config.json", lambda d: d.update(auto_map={"AutoModelForCausalLM": "x.Y"}))
    with pytest.raises(StacError, match="config.json asks for the model repository's own code"):
        load_model(str(model))


# --- real subprocesses: signals and tracebacks -----------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{site.getsitepackages()[0]}"}


def _run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stac.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("delay", [0.0, 0.3, 1.5, 4.0])
def test_a_signal_at_any_moment_is_one_line(tiny_gpt2_artifact, sig, code, delay):
    """From the first statement of ``main`` (the imports of torch and transformers come after
    it) to the middle of a chat turn: one line, exit 130 (SIGINT) or 143 (SIGTERM).

    The child installs stac's handlers (what ``main`` does first) before it says "ready", so
    that a signal sent at once cannot land in the microseconds before ``main`` runs: that
    window belongs to the interpreter's start-up, which no program can cover."""
    script = (
        "import sys, stac.cli; stac.cli.install_signal_handlers(); print('ready', flush=True); "
        f"sys.exit(stac.cli.main(['chat', {str(tiny_gpt2_artifact)!r}, '--prompt', 'hello', "
        "'--max-new-tokens', '100000']))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-S", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    name = "interrupted" if sig == signal.SIGINT else "terminated (SIGTERM)"
    _one_error_line(err, name)


@pytest.mark.parametrize(
    "args, message",
    [
        (("chat", "{art}", "--temperature", "nan"), "--temperature must be >= 0 and finite"),
        (("chat", "{art}", "--prompt", "\udcff\udcfe"), "--prompt is not valid UTF-8 text"),
        (("eval", "{art}", "--max-tokens", "0"), "--max-tokens 0 is less than one window"),
        (("compile", "--model", "/no/such/model"), "the path does not exist"),
        (("import-nir", "{nir}", "--steps", "-1"), "--steps must be in 1..1000000, got -1"),
        (("chat", "{art}", "-T", "x"), "argument -T/--timesteps: T must be an integer"),
    ],
)
def test_the_real_command_line_prints_one_line(tmp_path, tiny_gpt2_artifact, args, message):
    src = _nir(tmp_path / "s.nir", (3,))
    argv = [a.format(art=tiny_gpt2_artifact, nir=src) for a in args]
    res = (
        _run_cli(*argv, "--output-dir", str(tmp_path / "o"))
        if args[0] in ("compile", "import-nir")
        else _run_cli(*argv)
    )
    assert res.returncode == 2
    _one_error_line(res.stderr, message)


# --- smaller items -----------------------------------------------------------------------------


def test_the_fan_out_note_appears_only_when_it_splits_the_layer(tmp_path):
    def notes(axons_out: int) -> list[str]:
        path = tmp_path / f"chip-{axons_out}.toml"
        path.write_text(
            LOIHI2.replace(
                "axons_out_per_core = { value = 4096",
                f"axons_out_per_core = {{ value = {axons_out}",
            )
        )
        nodes = {
            "input": nir.Input(np.array([3])),
            "enc": SignedIF(threshold=np.ones(3, np.float32)),
            "lin": nir.Linear(weight=np.arange(6, dtype=np.float32).reshape(2, 3)),
            "output": nir.Output(np.array([2])),
        }
        edges = [("input", "enc"), ("enc", "lin"), ("lin", "output")]
        graph = run_passes(make_graph(nodes, edges, {}), load_profile_file(path))
        return [
            i.message for i in issues_of(graph)["partition"] if i.limit == "chip.axons_out_per_core"
        ]

    assert notes(4096) == []  # 4096 channels per core allowed, 3 needed: nothing limits
    assert notes(2) == [
        "enc: fan-out to 1 core(s) lets a core hold 2 channels, so its 3 channels take 2 cores "
        "(neurons_per_core alone would allow 8192 per core)"
    ]


def test_the_eval_plot_has_plain_tick_labels():
    def result(t: int, ratio: float) -> Fidelity:
        return Fidelity(t, 100, 10.0, 10.0 * ratio, ratio, 0.5, 0.1, 0.2, 3.0, {})

    for ratios in ((1.3, 1.1, 1.02, 1.01), (80.0, 9.0, 1.5, 1.05)):  # narrow, and > 10x
        fig = figure([result(t, r) for t, r in zip((4, 8, 16, 32), ratios, strict=True)], "t")
        fig.canvas.draw()
        for ax in fig.axes:
            for label in ax.get_xticklabels() + ax.get_yticklabels():
                text = label.get_text()
                assert "^" not in text and "$" not in text, text  # no 10^x mathtext
                if text:
                    float(text.replace("\u2212", "-"))  # a plain number
            assert [t.get_text() for t in ax.get_xticklabels()] == ["4", "8", "16", "32"]
