"""Hardware profiles: chips and hosts described as data in ``hw_profiles/*.toml``.

Every number in a profile file is a table ``{value = ..., source = "..."}``; the loader checks
that each required field is present, positive and sourced, and names the field when not.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stac.errors import StacError

PROFILE_DIR = Path(__file__).resolve().parent.parent / "hw_profiles"
SCHEMA = 1
KINDS = ("neuromorphic", "host")
_CHIP_FIELDS = {
    "chip": ("cores_per_chip", "neurons_per_core", "synaptic_memory_bytes_per_core",
             "max_chips", "weight_bits", "static_power_w"),
    "energy_pj": ("synop", "neuron_update", "spike_out"),
    "latency_ns": ("synop", "neuron_update", "spike_out", "barrier"),
}
_HOST_FIELDS = {"host": ("mac_energy_pj", "flop_energy_pj", "throughput_gflops")}
_CAPABILITIES = ("SignedIF", "Linear", "Affine",
                 # NIR node types (stac import-nir)
                 "LIF", "CubaLIF", "IF", "LI", "CubaLI", "I", "Threshold", "Conv2d",
                 "SumPool2d", "Flatten")


@dataclass(frozen=True)
class Profile:
    """One chip or host. ``values[section][name]`` is the number, ``sources`` its source."""

    name: str
    kind: str
    description: str
    path: Path
    values: dict[str, dict[str, float]]
    sources: dict[str, dict[str, str]]
    backends: tuple[str, ...] = ()
    host: str | None = None
    chip_ops: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, section: str, name: str) -> float:
        return self.values[section][name]


def _fail(path: Path, msg: str) -> StacError:
    return StacError(f"hardware profile {path}: {msg}")


def load_profile_file(path: str | Path) -> Profile:
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _fail(path, f"is not valid TOML ({exc})") from None
    for key in ("schema", "name", "kind", "description"):
        if key not in doc:
            raise _fail(path, f"missing field '{key}'")
    if doc["schema"] != SCHEMA:
        raise _fail(path, f"schema {doc['schema']} is not supported (expected {SCHEMA})")
    kind = doc["kind"]
    if kind not in KINDS:
        raise _fail(path, f"field 'kind' is {kind!r}, expected one of {KINDS}")
    required = _CHIP_FIELDS if kind == "neuromorphic" else _HOST_FIELDS
    values: dict[str, dict[str, float]] = {}
    sources: dict[str, dict[str, str]] = {}
    for section, names in required.items():
        table = doc.get(section)
        if not isinstance(table, dict):
            raise _fail(path, f"missing section [{section}]")
        values[section], sources[section] = {}, {}
        for name in names:
            entry = table.get(name)
            where = f"{section}.{name}"
            if not isinstance(entry, dict) or "value" not in entry:
                raise _fail(path, f"missing field '{where}' (a table {{value, source}})")
            value, source = entry["value"], entry.get("source")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _fail(path, f"field '{where}' must be a number, got {value!r}")
            if not value > 0:
                raise _fail(path, f"field '{where}' must be positive, got {value}")
            if not isinstance(source, str) or not source.strip():
                raise _fail(path, f"field '{where}' has no source")
            values[section][name], sources[section][name] = float(value), source
    chip_ops = tuple(doc.get("chip_ops", ()))
    unknown = [op for op in chip_ops if op not in _CAPABILITIES]
    if unknown:
        raise _fail(path, f"unknown capability {unknown[0]!r} in chip_ops (known: {_CAPABILITIES})")
    if kind == "neuromorphic":
        if not doc.get("host"):
            raise _fail(path, "missing field 'host' (the profile that prices host ops)")
        if not chip_ops:
            raise _fail(path, "missing field 'chip_ops' (the op types the chip runs)")
    return Profile(
        name=doc["name"], kind=kind, description=doc["description"], path=path, values=values,
        sources=sources, backends=tuple(doc.get("backends", ())), host=doc.get("host"),
        chip_ops=chip_ops,
    )


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(name_or_path: str) -> Profile:
    """A bundled profile by name, or a user's profile file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return load_profile_file(path)
    bundled = PROFILE_DIR / f"{name_or_path}.toml"
    if not bundled.is_file():
        raise StacError(
            f"unknown hardware profile {name_or_path!r}; known: {', '.join(profile_names())}"
        )
    return load_profile_file(bundled)
