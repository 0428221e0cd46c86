"""The compiled artifact: a directory of data (JSON, safetensors, tokenizer), never pickles.

It is written atomically with :func:`stac.files.writing` (re-exported here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir

from stac import __version__
from stac.errors import StacError
from stac.files import check_output_dir, write_json, writing
from stac.ir import IRFormatError, load

IR_FILE = "model.stac.json"  # its arrays are in model.stac.safetensors
ARTIFACT_FORMAT = 1


@dataclass
class Artifact:
    path: Path
    graph: nir.NIRGraph
    config: dict[str, Any]

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / "tokenizer"

    def tokenizer(self) -> Any:
        from stac.frontend.models import load_tokenizer

        return load_tokenizer(self.tokenizer_dir)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        raise StacError(f"{path} is not readable JSON; recompile the artifact") from None
    if not isinstance(config, dict):
        raise StacError(f"{path} must hold a JSON object; recompile the artifact")
    return config


def load_artifact(path: str | Path) -> Artifact:
    """Read an artifact; refuse one written by another artifact format."""
    path = Path(path)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise StacError(f"{path} is not a stac artifact (no config.json)")
    config = _read_config(config_path)
    if config.get("artifact_format") != ARTIFACT_FORMAT:
        raise StacError(
            f"{path} was written by stac {config.get('stac_version', '?')} in artifact format "
            f"{config.get('artifact_format')}; this stac ({__version__}) reads format "
            f"{ARTIFACT_FORMAT}: recompile it"
        )
    try:
        graph = load(path / IR_FILE)
    except IRFormatError as exc:
        raise StacError(str(exc)) from None
    return Artifact(path, graph, config)


__all__ = [
    "ARTIFACT_FORMAT",
    "IR_FILE",
    "Artifact",
    "check_output_dir",
    "load_artifact",
    "write_json",
    "writing",
]
