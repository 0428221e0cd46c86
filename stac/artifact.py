"""The compiled artifact: a directory of data (JSON, safetensors, tokenizer), never pickles.

``writing(path, force)`` builds the directory beside its final place and renames it into place
only when everything is written, so an interrupted compile leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import nir

from stac import __version__
from stac.errors import StacError
from stac.ir import IRFormatError, load

IR_FILE = "model.stac.json"  # its arrays are in model.stac.safetensors
ARTIFACT_FORMAT = 1


def check_output_dir(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise StacError(f"output directory {path} exists; pass --force to replace it")
    if path.exists() and not path.is_dir():
        raise StacError(f"output path {path} exists and is not a directory")


@contextlib.contextmanager
def writing(path: Path, force: bool) -> Iterator[Path]:
    """Yield a fresh temporary directory that becomes ``path`` when the block succeeds."""
    check_output_dir(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=float) + "\n")


@dataclass
class Artifact:
    path: Path
    graph: nir.NIRGraph
    config: dict[str, Any]

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / "tokenizer"

    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.tokenizer_dir)


def load_artifact(path: str | Path) -> Artifact:
    """Read an artifact; refuse one written by another artifact format."""
    path = Path(path)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise StacError(f"{path} is not a stac artifact (no config.json)")
    config = json.loads(config_path.read_text())
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
