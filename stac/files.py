"""Writing output directories and JSON: atomically, never half-written.

``writing(path, force)`` builds the directory beside its final place and renames it into place
only when everything is written, so an interrupted command leaves nothing half-written. Used by
every command that writes a directory (compile, import-nir, report, export-nir --split).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from stac.errors import StacError


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


__all__ = ["check_output_dir", "write_json", "writing"]
