"""Limits shared by several stages, in a module of their own so that no stage imports another
for them (the runtime checks T without importing the frontend).

The memory budget: sizes a user declares (a profile's mesh, NIR shapes, ``--steps``, an
input) are checked against one budget *before* anything of that size is allocated, so a
hostile or mistaken input ends with one error naming the field and the size instead of
filling the machine's memory. The budget is a fraction of the memory this process may use
(physical memory, or the cgroup's limit when that is lower): ``DEFAULT_MEMORY_FRACTION``
unless ``$STAC_MEMORY_BUDGET`` says otherwise, either as a fraction (``0.8``) or as a size
(``512M``, ``16G``, or bytes).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from stac.errors import StacError

#: The supported range of timesteps per token (T): the conversion's ``timesteps``, a
#: processor's ``T`` and ``stac eval --timesteps`` are all checked against it.
MIN_T, MAX_T = 1, 256

#: The most timesteps one ``import-nir`` run takes: the stepper runs ~10^4 steps a second on
#: small graphs, so a million steps is minutes; more is a mistake, not a workload.
MAX_STEPS = 10**6

MEMORY_BUDGET_ENV = "STAC_MEMORY_BUDGET"
#: Half the memory: the other half is left to the interpreter, torch's workspace and copies
#: the estimates below do not count.
DEFAULT_MEMORY_FRACTION = 0.5
_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def physical_memory() -> int:
    """Bytes of memory this process may use: physical memory, or a lower cgroup limit."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return int(total)


def memory_budget() -> int:
    """The budget in bytes (see the module docstring)."""
    text = os.environ.get(MEMORY_BUDGET_ENV, "").strip()
    if not text:
        return int(DEFAULT_MEMORY_FRACTION * physical_memory())
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(?:i?B)?", text, re.IGNORECASE)
    if match is None:
        raise StacError(
            f"${MEMORY_BUDGET_ENV}={text!r} is neither a fraction (0.5) nor a size (16G, 512M)"
        )
    number, unit = float(match[1]), match[2].upper()
    if not unit and number <= 1:
        if number <= 0:
            raise StacError(f"${MEMORY_BUDGET_ENV}={text!r} must be above 0")
        return int(number * physical_memory())
    return int(number * _UNITS[unit])


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_bytes(what: str, nbytes: float) -> None:
    """Refuse ``nbytes`` above the budget; ``what`` names the field and its size."""
    budget = memory_budget()
    if not nbytes <= budget:  # also refuses NaN
        raise StacError(
            f"{what} needs {format_bytes(nbytes)}, above stac's memory budget of "
            f"{format_bytes(budget)} (set ${MEMORY_BUDGET_ENV} to change it)"
        )


def array_bytes(shape: Iterable[int], itemsize: int = 4) -> int:
    """Bytes of a dense array of ``shape`` (exact Python integers: no overflow)."""
    return math.prod(int(s) for s in shape) * itemsize


def check_count(field: str, value: object, low: int, high: int, why: str = "") -> int:
    """``value`` as an integer in ``low..high``, else an error naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise StacError(f"{field} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise StacError(f"{field} must be in {low}..{high}{why}, got {value}")
    return value


#: The longest context stac accepts from a graph's metadata (SmolLM2: 8192, GPT-2: 1024).
MAX_POSITIONS = 2**20


def model_context(metadata: Mapping[str, Any]) -> int | None:
    """A language model graph's ``max_positions`` (None when it states none), checked: an
    artifact is data, and a negative or absurd context must not reach the runtime."""
    value = metadata.get("max_positions")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_POSITIONS:
        raise StacError(
            f"the artifact's max_positions is {value!r}; it must be an integer in "
            f"1..{MAX_POSITIONS} (recompile the artifact)"
        )
    return value


def check_finite_graph(graph: Any, where: str) -> None:
    """Refuse a graph whose float parameters hold NaN or inf (they would give blank replies
    and NaN ratios), or whose structure is broken, naming the node."""
    from stac.ir.graph import VerifyError, verify

    try:
        verify(graph)
    except VerifyError as exc:
        raise StacError(f"{where}: {exc}") from None


def check_hdf5(path: str | Path, what: str) -> None:
    """Refuse an HDF5 file (NIR, netx) whose arrays, read whole, exceed the budget, before
    reading any of them: the shapes come from the file's headers. The error names the
    largest array (its path in the file) and its shape."""
    import h5py

    arrays: list[tuple[str, tuple[int, ...], int]] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            arrays.append((name, tuple(obj.shape or ()), obj.dtype.itemsize))

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError:
        return  # not HDF5: the reader itself says what is wrong with the file
    total = sum(array_bytes(shape, size) for _, shape, size in arrays)
    if arrays and total > memory_budget():
        name, shape, size = max(arrays, key=lambda a: array_bytes(a[1], a[2]))
        check_bytes(
            f"{what} {path}: its {len(arrays)} arrays (the largest '{name}' of shape {shape}, "
            f"{format_bytes(array_bytes(shape, size))})",
            total,
        )


__all__ = [
    "DEFAULT_MEMORY_FRACTION",
    "MAX_POSITIONS",
    "MAX_STEPS",
    "MAX_T",
    "MEMORY_BUDGET_ENV",
    "MIN_T",
    "array_bytes",
    "check_bytes",
    "check_count",
    "check_finite_graph",
    "check_hdf5",
    "format_bytes",
    "memory_budget",
    "model_context",
    "physical_memory",
]
