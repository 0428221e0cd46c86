"""stac explore: Pareto fronts against hand-built sets, the calibration cache (a cached
conversion writes the same artifact bytes), a resumable sweep that records a failing point
and carries on, and one sweep through a local Ray."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path
from typing import Any

import pytest

from stac.errors import StacError
from stac.explore import Point, Settings, choose, dominates, expand, front, run_point_safe
from stac.explore.runner import load_records, run_sweep


def _rec(label: str, ratio: float, mj: float, tps: float, status: str = "ok") -> dict[str, Any]:
    return {
        "key": label,
        "label": label,
        "status": status,
        "fidelity": {"perplexity_ratio": ratio, "top1_agreement": 0.9},
        "targets": {"chip": {"energy_j": mj * 1e-3, "latency_s": 1 / tps, "tokens_per_s": tps}},
    }


# A hand-built set: (ratio, mJ, tokens/s). By inspection: a, b, c, e trade off against each
# other; d is worse than a in every objective; f equals a's energy and speed but has a
# worse ratio; the failed point g would dominate everything but is not a result.
HAND = [
    _rec("a", 1.00, 10.0, 100.0),
    _rec("b", 1.05, 5.0, 100.0),
    _rec("c", 1.20, 2.0, 50.0),
    _rec("d", 1.01, 11.0, 90.0),
    _rec("e", 1.00, 20.0, 400.0),
    _rec("f", 1.02, 10.0, 100.0),
    _rec("g", 0.5, 0.1, 1e6, status="error"),
]


def test_pareto_front_matches_the_hand_built_set() -> None:
    from stac.explore.pareto import rows

    items = rows(HAND, "chip")
    assert {r["label"] for r in front(items)} == {"a", "b", "c", "e"}
    # sorted by energy per token
    assert [r["label"] for r in front(items)] == ["c", "b", "a", "e"]
    by = {r["label"]: r for r in items}
    assert dominates(by["a"], by["d"]) and not dominates(by["d"], by["a"])
    assert dominates(by["a"], by["f"])
    assert not dominates(by["a"], by["a"])  # equal is not better


def test_choose_takes_the_least_energy_within_the_ratio() -> None:
    assert choose(HAND, "chip", 1.02)["label"] == "a"  # b (5 mJ) is above 1.02
    assert choose(HAND, "chip", 1.10)["label"] == "b"
    with pytest.raises(StacError, match="ratio <= 0.9"):
        choose(HAND, "chip", 0.9)


def test_expand_drops_bit_options_from_simplified_mode() -> None:
    pts = expand("m", ["full", "simplified"], [1, 2], [4, 8], [None], [1])
    assert len(pts) == 2 * 2 + 2
    assert Point("m", "simplified", 2) in pts
    with pytest.raises(StacError, match="not one of"):
        expand("m", ["fast"], [1], [None], [None], [1])


def test_cached_conversion_writes_the_same_artifact(
    tmp_path: Path, tiny_gpt2_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cold cache, a warm cache and no cache give byte-identical graphs; the warm run
    finds the statistics, the T's threshold steps and the GPTQ rounding in the cache
    (``stac compile --cache-dir``, as a user runs it)."""
    from stac.cli import main

    lines = []
    for name, cache in (("plain", None), ("cold", tmp_path / "c"), ("warm", tmp_path / "c")):
        argv = ["compile", "--model", str(tiny_gpt2_dir), "--mode", "full", "-T", "2"]
        argv += ["--calibration-passages", "1", "--output-dir", str(tmp_path / name)]
        assert main(argv + ([] if cache is None else ["--cache-dir", str(cache)])) == 0
        lines.append([ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("calib")])
    assert lines == [
        [],
        [f"calibration cache {tmp_path / 'c'}: 0 hits, 3 misses"],
        [f"calibration cache {tmp_path / 'c'}: 3 hits, 0 misses"],
    ]
    for f in ("model.stac.safetensors", "model.stac.json", "config.json", "conversion_log.txt"):
        for other in ("cold", "warm"):
            assert filecmp.cmp(tmp_path / "plain" / f, tmp_path / other / f, shallow=False), f
    assert len(list((tmp_path / "c").glob("*.safetensors"))) == 3
    assert not list((tmp_path / "c").glob("*.pkl"))
    assert main(argv[:-1] + [str(tmp_path / "x"), "--cache-dir", str(tmp_path / "x" / "c")]) != 0
    assert "inside the output directory" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        targets=("loihi2", "jetson-orin-nano"),
        work_dir=str(tmp_path / "work"),
        calibration_passages=1,
        eval_windows=1,
        window=32,
        cache_dir=str(tmp_path / "cache"),
    )


def test_sweep_records_a_failure_and_resumes(tmp_path: Path, tiny_gpt2_dir: Path) -> None:
    # payload bits 30 is outside 1..24: that point fails when converted, first in the sweep.
    points = expand(str(tiny_gpt2_dir), ["full"], [2], [30, 8], [None], [1])
    calls: list[str] = []

    def counted(p: Point, s: Settings) -> dict[str, Any]:
        calls.append(p.label)
        return run_point_safe(p, s)

    results = tmp_path / "points.jsonl"
    first = run_sweep(points, _settings(tmp_path), results, use_ray=False, point_fn=counted)
    assert calls == ["full T=2 p30", "full T=2 p8"]
    bad, good = first
    assert bad["status"] == "error" and "payload bits 30 outside 1..24" in bad["error"]
    assert good["status"] == "ok"
    assert 0.5 < good["fidelity"]["perplexity_ratio"] < 2
    for target in ("loihi2", "jetson-orin-nano"):
        assert good["targets"][target]["energy_j"] > 0
    lines = results.read_text().splitlines()
    assert [json.loads(x)["key"] for x in lines] == [p.key for p in points]

    calls.clear()
    again = run_sweep(points, _settings(tmp_path), results, use_ray=False, point_fn=counted)
    assert calls == []  # nothing recomputed
    assert again == first
    assert len(results.read_text().splitlines()) == 2
    # a torn last line (a run killed while writing) is ignored
    with results.open("a") as f:
        f.write('{"key": "tor')
    assert set(load_records(results)) == {p.key for p in points}


def test_sweep_on_local_ray(tmp_path: Path, tiny_gpt2_dir: Path) -> None:
    points = expand(str(tiny_gpt2_dir), ["simplified"], [2], [None], [None], [1])
    points += expand(str(tiny_gpt2_dir), ["full"], [2], [30], [None], [1])
    out = run_sweep(
        points,
        _settings(tmp_path),
        tmp_path / "points.jsonl",
        use_ray=True,
        num_cpus=1,
        memory_gb=0.5,
    )
    assert [r["status"] for r in out] == ["ok", "error"]
    assert out[0]["targets"]["loihi2"]["tokens_per_s"] > 0
    assert "payload bits 30" in out[1]["error"]
