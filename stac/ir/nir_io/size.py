"""Declared sizes in a NIR file, checked against a memory budget before anything is allocated.

A NIR file can declare an Input of 1e5 x 1e5 or hold a 60000 x 60000 weight in a few bytes
(HDF5 stores an unwritten dataset as its fill value): reading it would allocate until memory
runs out. :func:`check_declared_sizes` looks at the HDF5 metadata only (dataset shapes and the
declared ``shape`` / ``input_type`` / ``output_type`` values) and refuses, naming the node, the
field and the size, anything above :func:`memory_budget`.

The budget is :func:`stac.limits.memory_budget` (``$STAC_MEMORY_BUDGET``, by default half the
machine's memory). A declared neuron shape is priced at 4 bytes (float32) per element for one
sample and one step: the stepper holds several such arrays, so this is a lower bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stac.errors import StacError
from stac.limits import MEMORY_BUDGET_ENV, format_bytes, memory_budget

_FLOAT_BYTES = 4  # the stepper's float32
_SHAPE_FIELDS = ("shape", "input_type", "output_type")


def check_size(path: Path | str, what: str, elements: int, itemsize: int) -> None:
    """Refuse ``elements`` x ``itemsize`` bytes above the budget, naming ``what``."""
    need, budget = int(elements) * int(itemsize), memory_budget()
    if need > budget:
        raise StacError(
            f"NIR file {path}: {what} declares {elements:,} elements ({format_bytes(need)}), "
            f"more than the memory budget of {format_bytes(budget)} (${MEMORY_BUDGET_ENV}, by "
            "default half of this machine's memory)"
        )


def _declared(dataset: Any) -> int | None:
    """The element count a stored shape declares (None if it is not a list of integers)."""
    if dataset.dtype.kind not in "iu" or dataset.ndim > 1 or dataset.size > 16:
        return None
    values = np.asarray(dataset[()]).reshape(-1)
    if np.any(values < 0):
        return None
    return int(np.prod([int(v) for v in values], dtype=object)) if values.size else 1


def check_declared_sizes(path: Path | str, name: str, group: Any) -> None:
    """Every dataset of node ``name``'s HDF5 group (not of nested graphs) within the budget,
    by its stored shape, and every declared shape within it at float32."""

    def visit(sub: str, item: Any) -> None:
        import h5py

        if not isinstance(item, h5py.Dataset):
            return
        field = sub.replace("/", ".")
        elements = int(np.prod(item.shape, dtype=object)) if item.shape else 1
        check_size(
            path,
            f"node {name!r} field {field!r} {tuple(item.shape)}",
            elements,
            max(item.dtype.itemsize, 1),
        )
        if sub.split("/")[0] in _SHAPE_FIELDS:
            declared = _declared(item)
            if declared is not None:
                shape = tuple(int(v) for v in np.asarray(item[()]).reshape(-1))
                check_size(path, f"node {name!r} {field} {shape}", declared, _FLOAT_BYTES)

    for key in group:
        if key in ("nodes", "edges"):
            continue
        item = group[key]
        visit(key, item)
        if hasattr(item, "visititems"):
            item.visititems(lambda sub, it, key=key: visit(f"{key}/{sub}", it))


__all__ = ["check_declared_sizes", "check_size", "memory_budget"]
