"""The points of a design-space sweep and their keys."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from itertools import product
from typing import Any

from stac.errors import StacError
from stac.frontend.convert import MODES


@dataclass(frozen=True)
class Point:
    """One configuration: what is converted (model, mode, T, payload and weight bits) and the
    batch it is priced at. ``payload_bits`` and ``weight_bits`` are None in simplified mode
    (float weights, binary spikes) and mean "the profile's" when None in full mode."""

    model: str
    mode: str
    timesteps: int
    payload_bits: int | None = None
    weight_bits: int | None = None
    batch: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> str:
        """The point's identity in the results file: its parameters as canonical JSON."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        """A short hash of :attr:`key`, for file names."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        parts = [self.mode, f"T={self.timesteps}"]
        if self.payload_bits is not None:
            parts.append(f"p{self.payload_bits}")
        if self.weight_bits is not None:
            parts.append(f"w{self.weight_bits}")
        if self.batch != 1:
            parts.append(f"B={self.batch}")
        return " ".join(parts)


def int_list(text: str, option: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]`` in the given order, refusing non-integers and repeats."""
    out: list[int] = []
    for part in text.split(","):
        try:
            value = int(part.strip())
        except ValueError:
            raise StacError(f"{option}: {part.strip()!r} is not an integer (e.g. 1,2,4)") from None
        if value in out:
            raise StacError(f"{option}: {value} is given twice")
        out.append(value)
    return out


def name_list(text: str, option: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not text.strip() or any(not n for n in names) or len(set(names)) != len(names):
        raise StacError(f"{option} must be a comma-separated list without repeats, got {text!r}")
    if allowed is not None:
        for n in names:
            if n not in allowed:
                raise StacError(f"{option}: {n!r} is not one of {', '.join(allowed)}")
    return names


def expand(
    model: str,
    modes: list[str],
    timesteps: list[int],
    payload_bits: list[int | None],
    weight_bits: list[int | None],
    batches: list[int],
) -> list[Point]:
    """Every combination, in order; simplified mode takes no payload or weight bits, so its
    points differ only by T and batch (duplicates dropped). Values are not validated here: a
    point that cannot be converted fails alone and is recorded with its error."""
    for m in modes:
        if m not in MODES:
            raise StacError(f"--mode: {m!r} is not one of {', '.join(MODES)}")
    points: list[Point] = []
    for mode, t, p, w, b in product(modes, timesteps, payload_bits, weight_bits, batches):
        point = (
            Point(model, mode, t, None, None, b)
            if mode == "simplified"
            else Point(model, mode, t, p, w, b)
        )
        if point not in points:
            points.append(point)
    return points


__all__ = ["Point", "expand", "int_list", "name_list"]
