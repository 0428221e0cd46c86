"""Reading netx HDF5 fields the way lava-dl 0.6.0's netx does, and the state the layer
builders share (:class:`NetxContext`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stac.errors import StacError

#: lava-dl 0.6.0 hdf5.Network.get_neuron_params: every sigma-delta neuron gets state_exp 6.
NETX_STATE_EXP = 6
#: lava-dl 0.6.0 hdf5.Network(spike_exp=6): the default fraction bits of a payload.
NETX_SPIKE_EXP = 6
#: lava-dl 0.6.0 get_neuron_params: a neuron's output message bits when the file gives none.
NETX_MESSAGE_BITS = {"CUBA": 0, "SDNN": 16}
#: lava-dl 0.6.0 Network.create_dense: the neuron of a dense layer that has none.
NETX_INTEGRATOR = {
    "type": "CUBA",
    "iDecay": 0,
    "vDecay": 4096,
    "vThMant": 1 << 17,
    "refDelay": 1,
    "gradedSpike": 0,
}
CUBA_TYPES = ("CUBA", "LOIHI")  # netx treats LOIHI as CUBA
NEURON_TYPES = (*CUBA_TYPES, "SDNN")


def fail(path: Path | str, msg: str) -> StacError:
    return StacError(f"netx file {path}: {msg}")


def text(item: Any) -> str:
    """A netx string field (a bytes scalar, or a one-element array of bytes) as str."""
    value = item[()] if hasattr(item, "shape") else item
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def ints(item: Any, name: str) -> np.ndarray:
    """A numeric field as int64; netx casts with ``astype(int)``, so a fraction is refused."""
    value = np.asarray(item[()] if hasattr(item, "shape") else item)
    if value.dtype.kind not in "biuf":
        raise ValueError(f"{name} is not numeric (dtype {value.dtype})")
    if value.dtype.kind == "f":
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name} has NaN or infinite values")
        if np.any(value != np.round(value)):
            raise ValueError(f"{name} has fractional values, which netx would truncate")
        if value.size and np.abs(value).max() >= 2.0**53:
            raise ValueError(f"{name} has values too large for an integer")
    return value.astype(np.int64)


def one_int(item: Any, name: str) -> int:
    value = ints(item, name)
    if value.size != 1:
        raise ValueError(f"{name} must be one number, got shape {value.shape}")
    return int(value.reshape(-1)[0])


def pair(g: Any, key: str) -> tuple[int, int]:
    """A (height, width) field that may be stored as one number."""
    value = ints(g[key], key).reshape(-1)
    if value.size == 1:
        return int(value[0]), int(value[0])
    if value.size != 2:
        raise ValueError(f"{key} must be one or two numbers, got {value.tolist()}")
    return int(value[0]), int(value[1])


@dataclass
class NetxContext:
    """The graph under construction and what the next layer needs of the last one."""

    path: Path
    weight_bits: int  # chip.weight_bits: netx's synapse width
    bias_exp: int  # lava.netx_bias_exp: the exponent netx reads every CUBA bias at
    spike_exp: int
    state_exp: int = NETX_STATE_EXP
    nodes: dict[str, Any] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    prev: str | None = None  # the node the next one is fed by
    shape: tuple[int, ...] | None = None  # its output shape
    bits: int = 0  # its message bits (0: binary spikes)
    flatten_pending: bool = False

    def add(self, name: str, node: Any, shape: tuple[int, ...]) -> None:
        self.nodes[name] = node
        if self.prev is not None:
            self.edges.append((self.prev, name))
        self.prev, self.shape = name, shape


__all__ = [
    "CUBA_TYPES",
    "NETX_INTEGRATOR",
    "NETX_MESSAGE_BITS",
    "NETX_SPIKE_EXP",
    "NETX_STATE_EXP",
    "NEURON_TYPES",
    "NetxContext",
    "fail",
    "ints",
    "one_int",
    "pair",
    "text",
]
