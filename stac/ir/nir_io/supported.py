"""The NIR node types stac reads, runs and writes, and the tables the other NIR modules
share: which of them spike, which keep state, which can reset, and what is NIR-expressible."""

from __future__ import annotations

from typing import Any, Iterable

import nir

from stac.ir.analysis import SPIKING_TYPES
from stac.ir.nodes import StacNode

#: NIR node types stac can import, simulate (stac.sim.stepper) and export.
SUPPORTED: tuple[type, ...] = (
    nir.Input,
    nir.Output,
    nir.Affine,
    nir.Linear,
    nir.Scale,
    nir.Conv2d,
    nir.SumPool2d,
    nir.AvgPool2d,
    nir.Flatten,
    nir.LIF,
    nir.CubaLIF,
    nir.IF,
    nir.LI,
    nir.CubaLI,
    nir.I,
    nir.Threshold,
)
#: Supported types whose output is spikes (events): stac's spiking types that NIR has.
SPIKING: tuple[type, ...] = tuple(t for t in SPIKING_TYPES if t in SUPPORTED)
#: Neurons with a membrane (state carried from step to step).
STATEFUL: tuple[type, ...] = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI, nir.I)
#: Spiking neurons with a membrane, hence a reset rule (NIR 1.0 does not store one).
RESETTABLE: tuple[type, ...] = tuple(t for t in SPIKING if t in STATEFUL)
RESETS = ("zero", "subtract")
#: Node metadata key saying where a neuron's ``reset`` came from: "file" (the NIR file said
#: it), "option" (``--reset``) or "default" (neither said; "zero").
RESET_ORIGIN = "reset_origin"
#: Node metadata key of a recurrent weight (an Affine fed only by last step's neuron output):
#: the convention for its bias at step 0, one of :data:`RECURRENT_BIASES` ("snntorch": the
#: bias reaches the neuron at step 0, as snnTorch's RLeaky/RSynaptic; "norse": the recurrent
#: input, bias included, starts at step 1, as Norse's from_nir through nirtorch).
RECURRENT_BIAS = "recurrent_bias"
RECURRENT_BIASES = ("snntorch", "norse")


def nir_expressible(node: Any) -> bool:
    """True for a node that standard NIR can hold and stac can run (not a stac node)."""
    return not isinstance(node, StacNode) and type(node) in SUPPORTED


def type_list(types: Iterable[type] = SUPPORTED) -> str:
    """Type names joined for an error message."""
    return ", ".join(t.__name__ for t in types)


__all__ = [
    "RECURRENT_BIAS",
    "RECURRENT_BIASES",
    "RESETS",
    "RESETTABLE",
    "RESET_ORIGIN",
    "SPIKING",
    "STATEFUL",
    "SUPPORTED",
    "nir_expressible",
    "type_list",
]
