"""The base of stac's own IR nodes: frozen dataclasses that check themselves.

NIR's node classes mutate themselves in ``__post_init__`` and cannot be frozen, so stac's nodes
do not inherit from ``nir.NIRNode``; they live beside NIR's nodes in one ``nir.NIRGraph``. Each
stac node states its input and output shape (per token, without the time axis).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

_REGISTRY: dict[str, type["StacNode"]] = {}


def check_array(node: str, name: str, value: Any, ndim: int | None = None) -> None:
    """Raise ValueError unless ``value`` is a finite numpy array of ``ndim`` dimensions."""
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{node}.{name} must be a numpy array, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{node}.{name} must have {ndim} dimension(s), got shape {value.shape}")
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        raise ValueError(f"{node}.{name} contains NaN or infinite values")


def check_positive(node: str, name: str, value: int | float) -> None:
    if not value > 0:
        raise ValueError(f"{node}.{name} must be positive, got {value}")


@dataclass(frozen=True, eq=False)
class StacNode:
    """A node type NIR lacks. Subclasses set ``host_op`` and define the two shapes."""

    metadata: dict[str, Any] = field(default_factory=dict, kw_only=True)

    #: True for ops with no spike-driven form (they run on a host or an embedded core).
    host_op: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    @property
    def input_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def output_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Fields by name (arrays kept as arrays), plus ``type``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["type"] = type(self).__name__
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StacNode":
        data = dict(data)
        data.pop("type", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
        return cls(**data)


def stac_node_types() -> dict[str, type[StacNode]]:
    """Every stac node class by its type name."""
    return dict(_REGISTRY)
