"""Make an installed lava-nc 0.10 (and lava-dl 0.6) usable on Python 3.11; say what changed.

lava-nc 0.10.0 declares Python < 3.11 and, on 3.11, fails at import: dataclasses there refuse
the mutable default ``ByteEncoder()`` in ``lava/magma/compiler/var_model.py`` ("mutable default
... use default_factory"). This script rewrites those defaults as
``field(default_factory=ByteEncoder)``, which is what the message asks for and means the same.

lava-dl 0.6.0's ``lava/lib/dl/slayer/__init__.py`` imports its object-detection module, which
needs torchvision and opencv (neither installs beside torch 2.13 here), and netx imports slayer;
the script makes that one import optional (``obd`` is None when it fails), so netx loads.

lava-nc's message infrastructure calls ``multiprocessing.set_start_method('fork')`` when it is
first imported, which raises "context has already been set" in any process that has already
used multiprocessing (loading a Hugging Face model does); the script makes that call set
``fork`` only when it is not already the method (forcing it otherwise, as Lava needs fork).

Both wheels also install a top-level ``tests`` package (their own test suites) into
site-packages, which shadows a project's ``tests`` package; the script removes it when the
files there belong to a lava distribution (checked against the wheel's RECORD).

Run it with the interpreter of the environment to patch (``.venv/bin/python
scripts/patch_lava.py``). It is idempotent: a second run reports that nothing was left to do.
Exit status 1 when lava is not installed in that environment.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import re
import shutil
import sys
from pathlib import Path

MUTABLE = re.compile(r"^(\s+\w+: ByteEncoder) = ByteEncoder\(\)$", re.MULTILINE)
DATACLASS_IMPORT = "from dataclasses import dataclass, InitVar\n"
DATACLASS_IMPORT_FIXED = "from dataclasses import dataclass, field, InitVar\n"


def lava_root() -> Path | None:
    """The installed ``lava`` package directory, found without importing it."""
    spec = importlib.util.find_spec("lava")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        if (Path(location) / "magma").is_dir():
            return Path(location)
    return None


def patch_var_model(root: Path) -> list[str]:
    """Rewrite the mutable dataclass defaults; return one line per change."""
    path = root / "magma" / "compiler" / "var_model.py"
    text = path.read_text()
    fields = MUTABLE.findall(text)
    if not fields:
        return []
    if DATACLASS_IMPORT not in text:
        raise SystemExit(
            f"patch_lava: {path} does not import dataclasses as expected "
            "(lava-nc 0.10.0); not patching"
        )
    text = text.replace(DATACLASS_IMPORT, DATACLASS_IMPORT_FIXED, 1)
    text = MUTABLE.sub(r"\1 = field(default_factory=ByteEncoder)", text)
    path.write_text(text)
    for cache in (path.parent / "__pycache__").glob("var_model.*.pyc"):
        cache.unlink()
    return [
        f"{path}: {len(fields)} mutable ByteEncoder() default(s) -> "
        "field(default_factory=ByteEncoder)"
    ]


SLAYER_OBD = "from . import object_detection as obd\n"
SLAYER_OBD_FIXED = (
    "try:  # patched for stac: object_detection needs torchvision and opencv\n"
    "    from . import object_detection as obd\n"
    "except ImportError:\n"
    "    obd = None\n"
)


def replace_once(path: Path, old: str, new: str, change: str) -> list[str]:
    """Replace ``old`` by ``new`` in ``path`` unless done already (or absent); return
    ``[f"{path}: {change}"]`` when it changed the file, else []."""
    if not path.is_file():
        return []
    text = path.read_text()
    if new in text or old not in text:
        return []
    path.write_text(text.replace(old, new, 1))
    return [f"{path}: {change}"]


def patch_slayer(root: Path) -> list[str]:
    """Make lava-dl's eager object-detection import optional; return one line per change."""
    return replace_once(
        root / "lib" / "dl" / "slayer" / "__init__.py",
        SLAYER_OBD,
        SLAYER_OBD_FIXED,
        "'from . import object_detection as obd' made optional (it needs torchvision and opencv)",
    )


START_METHOD = "    mp.set_start_method('fork')\n"
START_METHOD_FIXED = (
    "    if mp.get_start_method(allow_none=True) != 'fork':  # patched for stac\n"
    "        mp.set_start_method('fork', force=True)\n"
)


def patch_start_method(root: Path) -> list[str]:
    """Make lava's import-time ``set_start_method('fork')`` safe to run after multiprocessing
    was used; return one line per change."""
    path = root / "magma" / "runtime" / "message_infrastructure" / "multiprocessing.py"
    return replace_once(
        path,
        START_METHOD,
        START_METHOD_FIXED,
        "set_start_method('fork') only when fork is not already the start method "
        "(it raised 'context has already been set' after a model load)",
    )


def remove_shadowing_tests(site: Path) -> list[str]:
    """Remove site-packages/tests when a lava wheel installed it (its RECORD lists it)."""
    tests = site / "tests"
    if not tests.is_dir():
        return []
    owners = []
    for dist in ("lava-nc", "lava-dl"):
        try:
            files = md.distribution(dist).files or []
        except md.PackageNotFoundError:
            continue
        if any(str(f) == "tests/__init__.py" for f in files):
            owners.append(dist)
    if not owners:
        return [f"{tests}: left alone (not installed by a lava wheel)"]
    shutil.rmtree(tests)
    return [
        f"{tests}: removed the top-level 'tests' package installed by "
        f"{', '.join(owners)} (it shadows the project's tests)"
    ]


def main() -> int:
    root = lava_root()
    if root is None:
        print(f"patch_lava: lava is not installed for {sys.executable}", file=sys.stderr)
        return 1
    changes = (
        patch_var_model(root)
        + patch_slayer(root)
        + patch_start_method(root)
        + remove_shadowing_tests(root.parent)
    )
    for line in changes:
        print(f"patch_lava: {line}")
    if not changes:
        print(f"patch_lava: {root} already patched; nothing to do")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
