"""Hardware profiles: chips and hosts described as data in ``stac/hw_profiles/*.toml``.

Every number in a profile file is a table ``{value = ..., source = "..."}``. The loader checks
each field against the schema below -- present, of the right kind (a count, a bit width, a
non-negative energy, a flag), consistent with its neighbours, and sourced -- and rejects
unknown fields, naming the field in every message. A profile knows no IR classes: the op names
of its ``[ops]`` table are checked against the node types by :mod:`stac.ir.capabilities`
before the profile is used as a target or by the passes.

Two kinds of profile:

- ``neuromorphic``: a chip the passes fit the network onto (cores, memory, fan-in/fan-out,
  mesh, spike format, fixed-point widths, per-event energies and latencies, and an ``[ops]``
  capability table saying which node types run on the chip);
- ``host``: a processor running ops in floating point -- the host beside a chip, and the dense
  baselines (a server CPU, an H100, a Jetson Orin Nano) with their roofline figures.
"""

from __future__ import annotations

import math
import re
import tomllib
from importlib import resources
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stac.errors import StacError

# The bundled profiles are package data (declared in pyproject.toml), found through
# importlib.resources so that a wheel install has them too.
PROFILE_DIR = Path(str(resources.files("stac").joinpath("hw_profiles")))
SCHEMA = 1
KINDS = ("neuromorphic", "host")

# Field rules: "count" int > 0, "bits" int in 1..32, "int" any integer, "uint" int >= 0,
# "pos" number > 0, "nonneg" number >= 0, "flag" a boolean, "steps" a table from positive
# integer keys (written as TOML keys, e.g. { 2 = 1000.0, 4 = 1400.0 }) to numbers >= 0.
_RULES = {
    "count": "a positive integer",
    "bits": "an integer bit width in 1..32",
    "int": "an integer",
    "uint": "a non-negative integer",
    "pos": "a positive number",
    "nonneg": "a number >= 0",
    "flag": "true or false",
    "steps": "a table from positive integers to numbers >= 0, e.g. { 2 = 1000.0 } (or {})",
}
_CHIP_FIELDS: dict[str, dict[str, str]] = {
    "chip": {
        "cores_per_chip": "count",
        "neurons_per_core": "count",
        "synaptic_memory_bytes_per_core": "count",
        "axons_in_per_core": "count",
        "axons_out_per_core": "count",
        "neuron_fanout_cores": "count",
        "max_chips": "count",
        "weight_bits": "bits",
        "static_power_w": "pos",
    },
    "mesh": {
        "tiles_x": "count",
        "tiles_y": "count",
        "cores_per_tile": "count",
        "hop_energy_pj": "nonneg",
        "hop_latency_ns": "nonneg",
    },
    "spikes": {"graded": "flag", "payload_bits": "bits"},
    "fixed_point": {
        "weight_exp_min": "int",
        "weight_exp_max": "int",
        "input_bits": "bits",
        "state_bits": "bits",
        "decay_bits": "uint",
        "threshold_bits": "bits",
        "threshold_shift": "uint",
        "bias_mantissa_bits": "bits",
        "bias_exp_bits": "uint",
    },
    "energy_pj": {
        "synop": "nonneg",
        "neuron_update": "nonneg",
        "spike_out": "nonneg",
        "spike": "nonneg",
        "message_in": "nonneg",
    },
    "latency_ns": {
        "synop": "nonneg",
        "neuron_update": "nonneg",
        "spike_out": "nonneg",
        "barrier": "nonneg",
        "spike": "nonneg",
        "message_in": "nonneg",
        "barrier_by_tiles": "steps",
    },
    "host_link": {
        "bandwidth_gb_s": "pos",
        "latency_us": "nonneg",
        "energy_pj_per_byte": "nonneg",
        "bytes_per_value": "count",
    },
    # Needed only by the lava backend (stac.backends.lava.config); optional otherwise.
    "lava": {
        "state_bits": "bits",
        "decay_bits": "uint",
        "threshold_bits": "bits",
        "threshold_shift": "uint",
        "bias_mantissa_bits": "bits",
        "bias_exp_bits": "uint",
        "weight_bits": "bits",
        "message_bits": "bits",
        "payload_parts": "count",
        "channel_groups": "count",
        "held_headroom": "count",
        "netx_bias_exp": "int",
    },
}
_OPTIONAL_SECTIONS = {"lava", "calibrated"}
_HOST_FIELDS: dict[str, dict[str, str]] = {
    "host": {
        "mac_energy_pj": "pos",
        "flop_energy_pj": "pos",
        "throughput_gflops": "pos",
        "flops_per_neuron_update": "count",
    },
    "dense": {
        "peak_tflops": "pos",
        "memory_bandwidth_gb_s": "pos",
        "memory_gb": "pos",
        "power_w": "pos",
    },
    # Optional: a published measurement of a similar-size LLM on the device (stac.sim.dense).
    "calibrated": {
        "energy_mj_per_token": "pos",
        "tokens_per_s": "pos",
        "model_params_m": "pos",
        "batch": "count",
    },
}
_TOP_LEVEL = {
    "schema",
    "name",
    "kind",
    "description",
    "backends",
    "host",
    "precision",
    "ops",
    "capabilities",
}
_OP_RUNS = ("chip", "host")

# Upper limits. A profile is data a user may write, so every size is bounded before a pass
# builds anything from it. Each limit is far above every real chip (in brackets) and keeps
# what the passes allocate per profile, and the products they price, small and finite.
#: Any integer field: fits a signed 32-bit integer (the index type of the passes' arrays).
MAX_INT = 2**31 - 1
#: "pos"/"nonneg" numbers (pJ, ns, W, GB/s, ...): a report multiplies them by event counts of
#: up to ~1e18, which stays finite in float64 (the largest real figure is an H100's ~1e3).
MAX_NUMBER = 1e15
#: Core slots on one chip, ``tiles_x x tiles_y x cores_per_tile``: the place pass builds one
#: coordinate per slot (TrueNorth: 4096).
MAX_MESH_SLOTS = 2**20
#: Chips in one system: the place pass lays them on a square grid (SpiNNaker2's largest
#: machine: 34,560 chips).
MAX_CHIPS = 2**20
#: Neurons one channel takes on a chip (``[ops]`` ``units``; 2 for a signed train).
MAX_UNITS = 64
#: A profile file is a few kB; a larger one (or a device such as /dev/zero) is refused unread.
MAX_FILE_BYTES = 1 << 20
#: Profile names (``name``, ``host``, ``backends``): letters, digits, ``.``, ``_`` and ``-``,
#: starting with a letter or digit -- a name never reads as a path (``../../evil``).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_FIELD_MAX = {"chip.max_chips": MAX_CHIPS, "ops.units": MAX_UNITS}


@dataclass(frozen=True)
class OpCapability:
    """One row of a chip's capability table."""

    run: str  # "chip" or "host"
    units: int  # neurons per channel on this chip (2 where a signed train needs two neurons)
    source: str


@dataclass(frozen=True)
class Capability:
    """One row of a chip's ``[capabilities]``: a host op its neurons can compute, on request
    (:mod:`stac.ir.passes.onchip`), and what that costs per value of the op's output."""

    units: int  # neurons per value
    synops_per_value: int  # synaptic ops per value and token beyond one per input value
    delay_steps: int  # timesteps the op adds to its chip stage
    source: str
    value_bits: int = 0  # width of the values it takes and sends (0: not stated, the word)


#: Keys of a ``[capabilities]`` row.
CAPABILITY_KEYS = ("units", "synops_per_value", "delay_steps", "value_bits", "source")


@dataclass(frozen=True)
class Profile:
    """One chip or host. ``values[section][name]`` is the number, ``sources`` its source."""

    name: str
    kind: str
    description: str
    path: Path
    values: dict[str, dict[str, Any]]
    sources: dict[str, dict[str, str]]
    backends: tuple[str, ...] = ()
    host: str | None = None
    ops: dict[str, OpCapability] = field(default_factory=dict)
    precision: str | None = None
    capabilities: dict[str, Capability] = field(default_factory=dict)

    def get(self, section: str, name: str) -> Any:
        return self.values[section][name]

    @property
    def chip_ops(self) -> tuple[str, ...]:
        """Node type names the chip runs (its ``[ops]`` rows with ``run = "chip"``)."""
        return tuple(op for op, cap in self.ops.items() if cap.run == "chip")

    def runs_on_chip(self, node: Any) -> bool:
        cap = self.ops.get(type(node).__name__)
        return cap is not None and cap.run == "chip"

    def units(self, node: Any) -> int:
        """Neurons per channel of ``node`` on this chip (1 unless the ``[ops]`` table, or for a
        host op moved onto the chip its ``[capabilities]`` row, says otherwise)."""
        cap = self.ops.get(type(node).__name__)
        if cap is None and type(node).__name__ in self.capabilities:
            return self.capabilities[type(node).__name__].units
        return cap.units if cap is not None else 1

    def only_capabilities(self, types: str | None) -> Profile:
        """This profile with its ``[capabilities]`` cut to ``types`` (comma-separated node
        types, e.g. ``Residual``; None: all of them). A type it does not list is refused."""
        if types is None:
            return self
        wanted = [t.strip() for t in types.split(",") if t.strip()]
        unknown = [t for t in wanted if t not in self.capabilities]
        if unknown or not wanted:
            raise StacError(
                f"--host-op-types {types!r}: profile {self.name!r} lists "
                f"{', '.join(sorted(self.capabilities)) or 'no'} [capabilities]"
                + (f", not {', '.join(unknown)}" if unknown else "")
            )
        return replace(self, capabilities={t: self.capabilities[t] for t in wanted})


def _fail(path: Path, msg: str) -> StacError:
    return StacError(f"hardware profile {path}: {msg}")


def _check_steps(path: Path, where: str, value: Any) -> dict[int, float]:
    """A ``steps`` field: ``{"2": 1000.0, ...}`` from TOML, as ``{2: 1000.0, ...}``."""
    if not isinstance(value, dict):
        raise _fail(path, f"field '{where}' must be {_RULES['steps']}, got {value!r}")
    out: dict[int, float] = {}
    for key, number in value.items():
        if not re.fullmatch(r"[0-9]{1,7}", str(key)) or not 1 <= int(key) <= MAX_MESH_SLOTS:
            raise _fail(
                path, f"field '{where}' has key {key!r}: must be an integer in 1..{MAX_MESH_SLOTS}"
            )
        out[int(key)] = _check_value(path, f"{where}.{key}", number, "nonneg")
    return dict(sorted(out.items()))


def _check_value(path: Path, where: str, value: Any, rule: str) -> Any:
    ok: bool
    if rule == "steps":
        return _check_steps(path, where, value)
    if rule == "flag":
        ok = isinstance(value, bool)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        ok = False
    elif rule in ("count", "bits", "int", "uint"):
        ok = (
            isinstance(value, int)
            and {
                "count": value > 0,
                "bits": 1 <= value <= 32,
                "int": True,
                "uint": value >= 0,
            }[rule]
        )
    else:
        ok = math.isfinite(value) and (value > 0 if rule == "pos" else value >= 0)
    if ok and not isinstance(value, bool):
        _check_upper(path, where, value, rule)
    if not ok:
        hint = (
            "must be positive"
            if rule in ("pos", "count")
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
            and value <= 0
            else f"must be {_RULES[rule]}"
        )
        raise _fail(path, f"field '{where}' {hint}, got {value!r}")
    return value if rule == "flag" or isinstance(value, int) else float(value)


def _check_upper(path: Path, where: str, value: float, rule: str) -> None:
    """The schema's upper limits (see ``MAX_*`` above)."""
    field = where if not where.startswith("ops.") else "ops.units"
    high: float
    if rule in ("count", "bits", "int", "uint"):
        high = _FIELD_MAX.get(field, 32 if rule == "bits" else MAX_INT)
        if rule == "int" and value < -MAX_INT:
            raise _fail(path, f"field '{where}' must be at least {-MAX_INT}, got {value!r}")
    else:
        high = MAX_NUMBER
    if value > high:  # the lower ends are the rules' own (checked before)
        shown = f"{high:g}" if isinstance(high, float) else str(high)
        raise _fail(path, f"field '{where}' must be at most {shown}, got {value!r}")


def _source(path: Path, where: str, entry: dict[str, Any]) -> str:
    """The ``source`` of a profile entry: a non-empty string, else the entry is refused."""
    source = entry.get("source")
    if not isinstance(source, str) or not source.strip():
        raise _fail(path, f"field '{where}' has no source")
    return source


def _read_sections(
    path: Path, doc: dict[str, Any], spec: dict[str, dict[str, str]]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    values: dict[str, dict[str, Any]] = {}
    sources: dict[str, dict[str, str]] = {}
    for section, names in spec.items():
        table = doc.get(section)
        if table is None and section in _OPTIONAL_SECTIONS:
            continue
        if table is None:
            raise _fail(path, f"missing section [{section}]")
        if not isinstance(table, dict):
            raise _fail(path, f"section [{section}] must be a table, got {table!r}")
        values[section], sources[section] = {}, {}
        for name, rule in names.items():
            entry = table.get(name)
            where = f"{section}.{name}"
            if not isinstance(entry, dict) or "value" not in entry:
                raise _fail(path, f"missing field '{where}' (a table {{value, source}})")
            unknown = set(entry) - {"value", "source"}
            if unknown:
                raise _fail(path, f"field '{where}' has unknown key(s) {sorted(unknown)}")
            value = _check_value(path, where, entry["value"], rule)
            values[section][name], sources[section][name] = value, _source(path, where, entry)
        extra = sorted(set(table) - set(names))
        if extra:
            raise _fail(path, f"unknown field '{section}.{extra[0]}' (known: {', '.join(names)})")
    return values, sources


def _read_ops(path: Path, doc: dict[str, Any]) -> dict[str, OpCapability]:
    table = doc.get("ops")
    if not isinstance(table, dict) or not table:
        raise _fail(path, "missing section [ops] (the node types the chip runs)")
    ops: dict[str, OpCapability] = {}
    for op, entry in table.items():
        where = f"ops.{op}"
        if not isinstance(entry, dict):
            raise _fail(path, f"field '{where}' must be a table {{run, units, source}}")
        unknown = set(entry) - {"run", "units", "source"}
        if unknown:
            raise _fail(path, f"field '{where}' has unknown key(s) {sorted(unknown)}")
        if entry.get("run") not in _OP_RUNS:
            raise _fail(
                path, f"field '{where}.run' must be one of {_OP_RUNS}, got {entry.get('run')!r}"
            )
        units = _check_value(path, f"{where}.units", entry.get("units", 1), "count")
        ops[op] = OpCapability(entry["run"], units, _source(path, where, entry))
    return ops


def _read_capabilities(path: Path, doc: dict[str, Any]) -> dict[str, Capability]:
    """The optional ``[capabilities]`` table: every row sourced, every number checked."""
    table = doc.get("capabilities", {})
    if not isinstance(table, dict):
        raise _fail(path, "field 'capabilities' must be a table of node types")
    caps: dict[str, Capability] = {}
    for op, entry in table.items():
        where = f"capabilities.{op}"
        if not isinstance(entry, dict):
            raise _fail(path, f"field '{where}' must be a table {{{', '.join(CAPABILITY_KEYS)}}}")
        unknown = sorted(set(entry) - set(CAPABILITY_KEYS))
        if unknown:
            raise _fail(path, f"field '{where}' has unknown key(s) {unknown}")
        source = _source(path, where, entry)
        units = _check_value(path, f"{where}.units", entry.get("units", 1), "count")
        if units > MAX_UNITS:
            raise _fail(path, f"field '{where}.units' is {units}, above the limit {MAX_UNITS}")
        numbers = [units]
        for key in ("synops_per_value", "delay_steps", "value_bits"):
            value = entry.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_UNITS:
                raise _fail(
                    path,
                    f"field '{where}.{key}' must be an integer in 0..{MAX_UNITS}, got {value!r}",
                )
            numbers.append(value)
        if numbers[3] > 64:
            raise _fail(path, f"field '{where}.value_bits' is {numbers[3]}, above 64")
        caps[op] = Capability(numbers[0], numbers[1], numbers[2], source, numbers[3])
    return caps


def _check_consistency(path: Path, v: dict[str, dict[str, Any]]) -> None:
    """Cross-field rules: values that are each fine but nonsensical together."""
    mesh, fx, spikes = v["mesh"], v["fixed_point"], v["spikes"]
    slots = mesh["tiles_x"] * mesh["tiles_y"] * mesh["cores_per_tile"]
    if slots > MAX_MESH_SLOTS:
        raise _fail(
            path,
            f"field 'mesh' holds {slots} cores (tiles_x x tiles_y x cores_per_tile), above the "
            f"limit of {MAX_MESH_SLOTS} per chip",
        )
    if slots < v["chip"]["cores_per_chip"]:
        raise _fail(
            path,
            f"field 'mesh' holds {slots} cores (tiles_x x tiles_y x cores_per_tile)"
            f", fewer than chip.cores_per_chip = {v['chip']['cores_per_chip']}",
        )
    if fx["weight_exp_min"] > fx["weight_exp_max"]:
        raise _fail(
            path, "field 'fixed_point.weight_exp_min' is above 'fixed_point.weight_exp_max'"
        )
    if fx["threshold_bits"] + fx["threshold_shift"] > fx["state_bits"]:
        raise _fail(
            path,
            "field 'fixed_point.threshold_bits' plus 'threshold_shift' exceeds "
            "'fixed_point.state_bits'",
        )
    if spikes["graded"] == (spikes["payload_bits"] == 1):
        raise _fail(
            path,
            "field 'spikes.payload_bits' must be 1 for binary spikes and more than "
            "1 for graded spikes (spikes.graded)",
        )


def _check_name(path: Path, where: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise _fail(
            path,
            f"field '{where}' must be a name of letters, digits, '.', '_' and '-' (at most 64, "
            f"starting with a letter or digit), got {value!r}",
        )
    return value


def _check_top_level(path: Path, doc: dict[str, Any]) -> None:
    """The plain fields: types and names (sections are checked by :func:`_read_sections`)."""
    for key in ("schema", "name", "kind", "description"):
        if key not in doc:
            raise _fail(path, f"missing field '{key}'")
    schema = doc["schema"]
    if isinstance(schema, bool) or schema != SCHEMA:
        raise _fail(path, f"schema {schema!r} is not supported (expected {SCHEMA})")
    _check_name(path, "name", doc["name"])
    if not isinstance(doc["description"], str) or not doc["description"].strip():
        raise _fail(path, f"field 'description' must be text, got {doc['description']!r}")
    if doc["kind"] not in KINDS:
        raise _fail(path, f"field 'kind' is {doc['kind']!r}, expected one of {KINDS}")
    if "precision" in doc and not isinstance(doc["precision"], str):
        raise _fail(path, f"field 'precision' must be text, got {doc['precision']!r}")
    backends = doc.get("backends", [])
    if not isinstance(backends, list):
        raise _fail(path, "field 'backends' must be a list of backend names")
    for b in backends:
        _check_name(path, "backends", b)
    host = doc.get("host")  # a host profile's [host] section is a table of figures
    if doc["kind"] == "neuromorphic" and host is None:
        raise _fail(path, "missing field 'host' (the profile that prices host ops)")
    if doc["kind"] == "neuromorphic" and not (
        isinstance(host, str) and (NAME_PATTERN.fullmatch(host) or host.endswith(".toml"))
    ):
        raise _fail(
            path, f"field 'host' must be a profile name or a .toml profile file, got {host!r}"
        )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        if not path.exists():
            raise _fail(path, "cannot be read (no such file)")
        if not path.is_file():
            raise _fail(path, "cannot be read (not a regular file)")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise _fail(path, f"is larger than {MAX_FILE_BYTES} bytes; not a profile")
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _fail(path, f"is not valid TOML ({exc})") from None
    except RecursionError:
        raise _fail(path, "is not valid TOML (nested too deeply)") from None


def load_profile_file(path: str | Path) -> Profile:
    path = Path(path)
    doc = _read_toml(path)
    _check_top_level(path, doc)
    kind = doc["kind"]
    spec = _CHIP_FIELDS if kind == "neuromorphic" else _HOST_FIELDS
    extra = sorted(set(doc) - _TOP_LEVEL - set(spec))
    if extra:
        raise _fail(path, f"unknown field '{extra[0]}'")
    values, sources = _read_sections(path, doc, spec)
    ops: dict[str, OpCapability] = {}
    capabilities: dict[str, Capability] = {}
    if kind == "neuromorphic":
        ops = _read_ops(path, doc)
        capabilities = _read_capabilities(path, doc)
        _check_consistency(path, values)
    elif "ops" in doc:
        raise _fail(path, "field 'ops' is only for neuromorphic profiles")
    elif "capabilities" in doc:
        raise _fail(path, "field 'capabilities' is only for neuromorphic profiles")
    backends = doc.get("backends", [])
    return Profile(
        name=doc["name"],
        kind=kind,
        description=doc["description"],
        path=path,
        values=values,
        sources=sources,
        backends=tuple(backends),
        host=doc["host"] if kind == "neuromorphic" else None,
        ops=ops,
        precision=doc.get("precision"),
        capabilities=capabilities,
    )


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def is_profile_path(name_or_path: str) -> bool:
    """True when ``name_or_path`` names a file rather than a bundled profile."""
    path = Path(name_or_path)
    return path.suffix == ".toml" or path.exists() or "/" in name_or_path


def load_profile(name_or_path: str) -> Profile:
    """A bundled profile by name, or a user's profile file by path."""
    if is_profile_path(name_or_path):
        return load_profile_file(name_or_path)
    bundled = PROFILE_DIR / f"{name_or_path}.toml"
    if not bundled.is_file():
        raise StacError(
            f"unknown hardware profile {name_or_path!r}; known: {', '.join(profile_names())}"
        )
    return load_profile_file(bundled)


_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def load_bundled(name: str, what: str = "hardware profile", where: str = "") -> Profile:
    """A bundled profile by name only (never a path)."""
    if not _PROFILE_NAME.fullmatch(name) or name.endswith(".toml"):
        raise StacError(f"{what} {name!r}{where} is not a profile name")
    bundled = PROFILE_DIR / f"{name}.toml"
    if not bundled.is_file():
        raise StacError(f"unknown {what} {name!r}{where}; known: {', '.join(profile_names())}")
    return load_profile_file(bundled)


def host_profile(profile: Profile) -> Profile:
    """The host profile that prices a neuromorphic ``profile``'s host ops.

    Its field ``host`` is a name, never a path: the profile file of that name beside
    ``profile`` (an artifact's own copy, or a user's host file next to the chip's), else the
    bundled profile of that name.
    """
    if profile.host is None:
        raise StacError(f"profile {profile.name} is a {profile.kind} profile and names no host")
    name = profile.host
    if not _PROFILE_NAME.fullmatch(name) or name.endswith(".toml"):
        raise _fail(
            profile.path,
            f"field 'host' must be a profile name (a bundled profile or a file <name>.toml "
            f"beside this one), not a path: {name!r}",
        )
    beside = profile.path.parent / f"{name}.toml"
    if beside.is_file() and not beside.is_symlink():
        return load_profile_file(beside)
    return load_bundled(name, "host profile", f" (field 'host' of {profile.path})")
