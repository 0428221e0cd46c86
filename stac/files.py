"""Writing output directories and JSON: atomically, never half-written, never over a stranger.

``writing(path, force, reads)`` builds the directory beside its final place (``.NAME.partial-*``)
and renames it into place only when everything is written, so an interrupted command leaves
nothing half-written. Used by every command that writes a directory (compile, import-nir,
report, export-nir --split). The rules:

- every directory stac writes carries the marker file :data:`MARKER`; ``--force`` replaces only
  a directory that carries it, and never a path the command reads (``reads``);
- a replaced directory is first renamed to a uniquely named backup (``.NAME.old-<random>``),
  removed once the new one is in place;
- two writers racing into one path: the rename is retried, the last writer wins (with
  ``force``), or a clear error is raised (without it);
- partial directories left by a killed run (stac's pattern, stac's marker, owner process gone)
  are removed at the next write into the same parent;
- the output is created with the usual permissions (0777/0666 less the umask), not mkdtemp's
  0700;
- the output's parent is checked writable before any work (:func:`check_output_dir`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

from stac.errors import StacError

log = logging.getLogger(__name__)

MARKER = ".stac-output"  # in every directory stac writes; its text never changes
MARKER_TEXT = "written by stac; `--force` may replace this directory\n"
OWNER = ".stac-partial-owner"  # host and pid of the writer, only while it is partial
_RETRIES = 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode of a new file as ``open`` would make it: 0666 less the umask (``mkstemp``
    makes 0600, which other users of a shared machine cannot read)."""
    return 0o666 & ~_umask()


def _overlaps(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a in b.parents or b in a.parents


def check_not_read(path: Path, reads: Iterable[str | Path], what: str = "output") -> None:
    """Refuse an output ``path`` that is, holds or lies inside a path the command reads."""
    for read in reads:
        if _overlaps(Path(path), Path(read)):
            raise StacError(
                f"{what} {path} overlaps {read}, which this command reads; choose another "
                "output path"
            )


def check_writable(path: Path) -> None:
    """Refuse when ``path`` cannot be created: its nearest existing ancestor must be a
    writable directory."""
    parent = Path(os.path.abspath(path)).parent
    while not parent.exists():
        if parent.is_symlink():  # a dangling link
            raise StacError(f"cannot write {path}: {parent} is a broken symbolic link")
        parent = parent.parent
    if not parent.is_dir():
        raise StacError(f"cannot write {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StacError(f"cannot write {path}: directory {parent} is not writable")


def is_stac_output(path: Path) -> bool:
    marker = path / MARKER
    return path.is_dir() and not path.is_symlink() and marker.is_file()


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _foreign(path: Path) -> bool:
    """True when ``path`` is there and is not a directory stac wrote. A path another writer
    moves away while it is looked at is not foreign (the install step looks again)."""
    st = _lstat(path)
    if st is None or is_stac_output(path):
        return False
    now = _lstat(path)
    return now is not None and (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev)


def check_output_dir(path: Path, force: bool, reads: Iterable[str | Path] = ()) -> None:
    """Everything about an output directory that can be checked before the work starts."""
    path = Path(path)
    check_not_read(path, reads, "output directory")
    if path.is_symlink():
        raise StacError(f"output directory {path} is a symbolic link; give the real path")
    if _lstat(path) is not None:
        if not force:
            raise StacError(f"output directory {path} exists; pass --force to replace it")
        if _foreign(path):
            if not path.is_dir():
                raise StacError(f"output path {path} exists and is not a directory")
            raise StacError(
                f"output directory {path} was not written by stac (it has no {MARKER} file); "
                "--force replaces only stac's own output: remove it yourself or choose another"
            )
    check_writable(path)


def _owner_text() -> str:
    return f"{socket.gethostname()} {os.getpid()}\n"


def _owner_alive(partial: Path) -> bool:
    """True unless the partial directory's writer is known to be gone (same host, no pid)."""
    try:
        host, pid = (partial / OWNER).read_text().split()
        number = int(pid)
    except (OSError, ValueError):
        return True  # its writer removed the line as it finished: leave it to that writer
    if host != socket.gethostname():
        return True
    try:
        os.kill(number, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(parent: Path, name: str, before: float) -> list[Path]:
    """Remove ``.NAME.partial-*`` directories in ``parent`` that stac left (they carry its
    marker), older than ``before`` and whose writer is gone; return those removed."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.partial-[A-Za-z0-9_]+$")
    removed = []
    for entry in parent.glob(f".{glob_escape(name)}.partial-*"):
        if not pattern.match(entry.name) or entry.is_symlink() or not entry.is_dir():
            continue
        if not (entry / MARKER).is_file() or _owner_alive(entry):
            continue
        if entry.stat().st_mtime >= before:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        log.info("removed %s, left by an interrupted run", entry)
        removed.append(entry)
    return removed


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _normal_modes(root: Path) -> None:
    """0777/0666 less the umask on everything written (mkdtemp made the root 0700)."""
    mask = _umask()
    os.chmod(root, 0o777 & ~mask)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o777 & ~mask)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, 0o666 & ~mask)


def _install(tmp: Path, path: Path, force: bool) -> None:
    """Rename ``tmp`` to ``path``; a stac directory already there is moved aside first."""
    backups: list[Path] = []
    try:
        for _ in range(_RETRIES):
            if path.exists() or path.is_symlink():
                if not force:
                    raise StacError(
                        f"output directory {path} was created by another command while this "
                        "one ran; pass --force to replace it"
                    )
                if _foreign(path):
                    raise StacError(
                        f"output directory {path} appeared while this command ran and was not "
                        f"written by stac (no {MARKER}); it was left alone"
                    )
                backup = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:12]}")
                try:
                    os.rename(path, backup)
                except FileNotFoundError:  # another writer moved it first
                    continue
                backups.append(backup)
            try:
                os.rename(tmp, path)
                return
            except OSError as exc:  # another writer put its directory there in between
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise StacError(f"cannot rename {tmp} to {path}: {exc.strerror}") from None
            time.sleep(0.01)
        raise StacError(f"could not put {path} in place: other writers kept replacing it")
    finally:
        for backup in backups:
            shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def writing(path: Path, force: bool, reads: Iterable[str | Path] = ()) -> Iterator[Path]:
    """Yield a fresh temporary directory that becomes ``path`` when the block succeeds.

    ``reads`` are paths the command reads: the output may not overlap any of them.
    """
    started = time.time()
    path = Path(path)
    reads = list(reads)
    check_output_dir(path, force, reads)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StacError(f"cannot create directory {path.parent}: {exc.strerror}") from None
    clean_stale(path.parent, path.name, started)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    except OSError as exc:
        raise StacError(f"cannot write into {path.parent}: {exc.strerror}") from None
    try:
        (tmp / OWNER).write_text(_owner_text())  # before the marker: a marked partial has it
        (tmp / MARKER).write_text(MARKER_TEXT)
        yield tmp
        (tmp / OWNER).unlink()
        _normal_modes(tmp)
        _install(tmp, path, force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=float) + "\n")


__all__ = [
    "file_mode",
    "MARKER",
    "OWNER",
    "check_not_read",
    "check_output_dir",
    "check_writable",
    "clean_stale",
    "is_stac_output",
    "write_json",
    "writing",
]
