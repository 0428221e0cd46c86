"""stac: a deployment compiler that turns Hugging Face causal LMs into spiking networks.

The public API (see :mod:`stac.api`): :func:`stac.compile` returns a :class:`stac.CompiledModel`
with ``save_pretrained`` / ``from_pretrained``, ``report``, ``evaluate`` and ``processor``.
They are imported on first use, so ``import stac`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from stac.errors import StacError

if TYPE_CHECKING:
    from stac.api import (
        CompiledModel,
        FidelityReport,
        TargetFigures,
        TargetsReport,
        compile,
    )
    from stac.runtime import SpikeCausalLMOutput, TemporalSpikeProcessor

_LAZY = {
    "compile": "stac.api",
    "CompiledModel": "stac.api",
    "FidelityReport": "stac.api",
    "TargetFigures": "stac.api",
    "TargetsReport": "stac.api",
    "SpikeCausalLMOutput": "stac.runtime",
    "TemporalSpikeProcessor": "stac.runtime",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stac' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "CompiledModel",
    "FidelityReport",
    "SpikeCausalLMOutput",
    "StacError",
    "TargetFigures",
    "TargetsReport",
    "TemporalSpikeProcessor",
    "__version__",
    "compile",
]
