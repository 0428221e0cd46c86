"""The bundle's ``manifest.json``: its rules, and the check that reads it.

A malformed manifest (not JSON, another format or version, a missing or mistyped field, a step
naming a file the bundle lacks or a tensor nothing produced) is one :class:`StacError` that
says what is wrong, before anything runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stac.errors import StacError

FORMAT = "stac-bundle"
VERSION = 1
MANIFEST = "manifest.json"
RUNS = ("host", "encoder", "chip")


def schedule_text() -> list[str]:
    """The rules a runtime follows, written into every manifest."""
    return [
        "Values are per token: [batch, tokens, features] float32, the mean over the T steps "
        "of the token (encoders: per step, [T, batch, tokens, features]). A step's input that "
        "lists several tensors is their sum, added in the listed order (NIR edges sum).",
        "Run the steps of `schedule` in order for each batch of new tokens; `token_ids` and "
        "`positions` ([batch, tokens] int64, positions continuing after the cached tokens) "
        "feed the ONNX graphs that list them under `uses`.",
        "run = host: an ONNX graph (opset `onnx_opset`, weights inside) run once per token on "
        "the named inputs; attention graphs also read `<node>.past_key/.past_value` "
        "([batch, kv_heads, cached, head_dim]; zero-length at the start) and give "
        "`.present_key/.present_value`, the cache to pass next time.",
        "run = encoder: stac's SignedIF (stac.sim.neurons.signed_if_scan, the semantics of "
        "stac.sim.semantics): from a zero membrane at each token it runs T steps on the "
        "token's drive (held every step, or with onset_drive T x the drive at the first step) "
        "and emits threshold x payload per step (payload in [-max_payload, max_payload]; "
        "with token_gain the thresholds are first scaled per token by "
        "max(gain_floor, gain_ratio * max_c |x_c| / threshold_c), or 1 where that is 0; "
        "gain_floor and gain_ratio default to 1). Thresholds: chip/encoders.safetensors. With a "
        "`dead_zone` entry (its array in the same file, value units) a step whose potential "
        "lies in [-dead_zone, dead_zone) emits nothing and keeps the potential.",
        "run = chip: a NIR part (chip/part_k.nir) of linear maps; Input `in_X` carries X's "
        "per-step value, Output `out_Y` gives Y's. The host reads each output as its mean "
        "over the token's T steps (the T-step accumulation), which for a linear map equals "
        "the map applied to the mean of its input over the T steps: that is how stac's "
        "simulator and this runner compute it.",
        "The logits are the mean over the T steps of the sum of `logits.inputs` (or the value "
        "of `logits.node` when a chip part holds the graph Output).",
    ]


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise StacError(f"{where}: malformed {MANIFEST}: {what}")


def load_manifest(bundle: str | Path) -> dict[str, Any]:
    """Read and check ``bundle/manifest.json``; return it."""
    bundle = Path(bundle)
    path = bundle / MANIFEST
    where = f"bundle {bundle}"
    if not path.is_file():
        raise StacError(f"{where} is not a stac bundle (no {MANIFEST})")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StacError(f"{where}: malformed {MANIFEST}: not JSON ({exc})") from None
    _need(isinstance(doc, dict), where, "the top level is not an object")
    _need(doc.get("format") == FORMAT, where, f"'format' is {doc.get('format')!r}, not {FORMAT!r}")
    _need(
        doc.get("version") == VERSION, where, f"'version' is {doc.get('version')!r}, not {VERSION}"
    )
    for key, kind in (("timesteps", int), ("vocab_size", int), ("onnx_opset", int)):
        _need(
            isinstance(doc.get(key), kind) and doc[key] > 0,
            where,
            f"'{key}' must be a positive integer",
        )
    logits = doc.get("logits")
    _need(
        isinstance(logits, dict)
        and isinstance(logits.get("inputs"), list)
        and isinstance(logits.get("node"), str),
        where,
        "'logits' must be an object with 'node' and 'inputs'",
    )
    schedule = doc.get("schedule")
    _need(
        isinstance(schedule, list) and len(schedule) > 0,
        where,
        "'schedule' must be a non-empty list",
    )
    made: set[str] = set()
    for i, step in enumerate(schedule):
        at = f"schedule[{i}]"
        _need(isinstance(step, dict), where, f"{at} is not an object")
        run = step.get("run")
        _need(run in RUNS, where, f"{at}.run is {run!r}, not one of {RUNS}")
        if run in ("host", "chip"):
            _need(isinstance(step.get("file"), str), where, f"{at}.file is missing")
            _need(
                (bundle / step["file"]).is_file(),
                where,
                f"{at}.file {step['file']} is not in the bundle",
            )
        reads = step.get("inputs")
        if run == "chip":
            _need(
                isinstance(reads, dict) and isinstance(step.get("outputs"), dict),
                where,
                f"{at}: a chip step needs 'inputs' and 'outputs' objects",
            )
            reads, writes = (
                list(reads.values()),
                list(step["outputs"].values()) + list(step.get("nodes", {})),
            )
        elif run == "host":
            _need(
                isinstance(reads, list)
                and isinstance(step.get("outputs"), list)
                and isinstance(step.get("caches"), dict),
                where,
                f"{at}: a host step needs 'inputs', 'outputs' and 'caches'",
            )
            writes = step["outputs"]
        else:
            _need(
                isinstance(reads, list) and isinstance(step.get("name"), str),
                where,
                f"{at}: an encoder step needs 'name' and 'inputs'",
            )
            fields: tuple[tuple[str, type], ...] = (
                ("threshold", str),
                ("max_payload", int),
                ("token_gain", bool),
                ("onset_drive", bool),
            )
            for key, want in fields:
                _need(
                    isinstance(step.get(key), want),
                    where,
                    f"{at}.{key} is missing or not a {want.__name__}",
                )
            _need(
                isinstance(step.get("dead_zone", ""), str),
                where,
                f"{at}.dead_zone is not a str",
            )
            for key, zero_ok in (("gain_ratio", False), ("gain_floor", True)):
                value = step.get(key, 1.0)
                number = isinstance(value, (int, float)) and not isinstance(value, bool)
                _need(
                    number and (0 <= value if zero_ok else 0 < value) and value <= 1,
                    where,
                    f"{at}.{key} is not a number in " + ("[0, 1]" if zero_ok else "(0, 1]"),
                )
            writes = [step["name"]]
        missing = [r for r in reads if r not in made]
        _need(
            not missing,
            where,
            f"{at} reads {missing[0]!r}, which no earlier step produces" if missing else "",
        )
        made.update(writes)
    missing = [r for r in logits["inputs"] if r not in made]
    _need(
        not missing, where, f"logits read {missing[0]!r}, which no step produces" if missing else ""
    )
    _need(
        (bundle / "chip" / "encoders.safetensors").is_file(),
        where,
        "chip/encoders.safetensors is not in the bundle",
    )
    return doc


__all__ = ["FORMAT", "MANIFEST", "RUNS", "VERSION", "load_manifest", "schedule_text"]
