"""Spatial layers (Conv2d, SumPool2d, AvgPool2d) mapped as Loihi compilers map them.

A spatial layer's outputs ``[C, H, W]`` are tiled over cores by space and channel: the rows
of its placement blocks index the outputs in **(x, y, c) order** (x slowest, as Lava lays out
a convolution's neurons), so a block ``row0:row1`` is a slab of whole columns (``x``), else a
run of positions of one column with all channels, else a channel range at one position. Intel's
compiler tiles PilotNet SDNN's convolutions the same way (slabs of whole columns, every channel:
lava-dl ``tutorials/lava/lib/dl/netx/pilotnet_sdnn/benchmark.ipynb``, per-core table).

An input spike at position ``(y, x)`` reaches only the tiles whose outputs have ``(y, x)`` in
their receptive field (:func:`reach`): those tiles are its destination cores, for the place
pass's routes, the cost model's messages and hops, and the partition's fan-out limits.
Depthwise / grouped kernels are routed by position only (every tile that holds some output
at a reached position), an over-estimate when a tile holds a subset of the groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from stac.ir.graph import input_shape, output_shape

#: Node types mapped as spatial tiles.
SPATIAL_TYPES: tuple[type, ...] = (nir.Conv2d, nir.SumPool2d, nir.AvgPool2d)


def _pair(value: Any) -> tuple[int, int]:
    v = np.ravel(np.asarray(value, dtype=np.int64))
    return (int(v[0]), int(v[-1])) if v.size else (0, 0)


@dataclass(frozen=True)
class Geometry:
    """A spatial layer's shapes and window (kernel, stride, padding, dilation)."""

    c_in: int
    h_in: int
    w_in: int
    c_out: int
    h_out: int
    w_out: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @property
    def positions_in(self) -> int:
        return self.h_in * self.w_in

    @property
    def outputs(self) -> int:
        return self.c_out * self.h_out * self.w_out

    @property
    def fan_in(self) -> int:
        """Synapses per output neuron (inputs of its window, all its group's channels)."""
        per_channel = 1 if not self.weighted else self.c_in // self.groups
        return per_channel * self.kernel[0] * self.kernel[1]

    @property
    def weighted(self) -> bool:
        return self.groups > 0

    def kernel_weights(self, channels: int) -> int:
        """Weights a core stores for ``channels`` output channels (pooling: one unit weight)."""
        if not self.weighted:
            return 1
        return channels * (self.c_in // self.groups) * self.kernel[0] * self.kernel[1]


def geometry(node: Any) -> Geometry:
    c_in, h_in, w_in = (int(v) for v in input_shape(node))
    c_out, h_out, w_out = (int(v) for v in output_shape(node))
    if isinstance(node, nir.Conv2d):
        w = np.asarray(node.weight)
        return Geometry(
            c_in,
            h_in,
            w_in,
            c_out,
            h_out,
            w_out,
            (w.shape[2], w.shape[3]),
            _pair(node.stride),
            _pair(node.padding),
            _pair(node.dilation),
            int(node.groups),
        )
    return Geometry(
        c_in,
        h_in,
        w_in,
        c_out,
        h_out,
        w_out,
        _pair(node.kernel_size),
        _pair(node.stride),
        _pair(node.padding),
        (1, 1),
        0,
    )  # groups 0: pooling


def is_spatial(node: Any) -> bool:
    return isinstance(node, SPATIAL_TYPES) and len(output_shape(node)) == 3


def tiles(g: Geometry, cap: int, channel_cap: int) -> list[tuple[int, int]]:
    """Output ranges in (x, y, c) order, at most ``cap`` outputs and ``channel_cap`` channels
    each: slabs of whole columns when a column fits, else runs of whole positions, else
    channel ranges of one position; balanced, so every output is in exactly one tile."""
    column, position = g.h_out * g.c_out, g.c_out
    cap = max(cap, 1)
    if column <= cap and channel_cap >= g.c_out:
        unit, count = column, g.w_out
    elif position <= cap and channel_cap >= g.c_out:
        unit, count = position, g.w_out * g.h_out
    else:  # channel groups at each position
        per = max(1, min(cap, channel_cap))
        groups = -(-g.c_out // per)
        edges = [g.c_out * i // groups for i in range(groups + 1)]
        return [
            (p * g.c_out + edges[i], p * g.c_out + edges[i + 1])
            for p in range(g.w_out * g.h_out)
            for i in range(groups)
        ]
    parts = -(-count // (cap // unit))
    edges = [count * i // parts for i in range(parts + 1)]
    return [(edges[i] * unit, edges[i + 1] * unit) for i in range(parts)]


def tile_channels(g: Geometry, r0: int, r1: int) -> int:
    """Output channels a tile holds (the kernels it must store)."""
    return g.c_out if r1 - r0 >= g.c_out else len({c % g.c_out for c in range(r0, r1)})


def xyc_to_flat(shape: tuple[int, ...]) -> np.ndarray:
    """``perm[k]``: NIR's flat (c, y, x) index of the output at (x, y, c)-order index ``k``."""
    c, h, w = shape
    x, y, ch = np.meshgrid(np.arange(w), np.arange(h), np.arange(c), indexing="ij")
    return ((ch * h + y) * w + x).ravel()


def core_of_channel(
    ranges: np.ndarray, channels: int, spatial_shape: tuple[int, ...] | None
) -> np.ndarray:
    """Local core index of every channel (NIR flat order) of a node whose cores hold the row
    ``ranges`` (in (x, y, c) order when ``spatial_shape`` is given)."""
    out = np.repeat(np.arange(len(ranges)), ranges[:, 1] - ranges[:, 0])
    if spatial_shape is None:
        return out[:channels]
    core = np.empty(channels, np.int64)
    core[xyc_to_flat(spatial_shape)] = out
    return core


def _output_positions(g: Geometry, ranges: np.ndarray) -> np.ndarray:
    """``[tiles, h_out * w_out]``: whether a tile holds some output at each position (y, x)."""
    held = np.zeros((len(ranges), g.h_out * g.w_out), bool)
    for t, (r0, r1) in enumerate(ranges):
        pos = np.arange(r0 // g.c_out, (r1 - 1) // g.c_out + 1)  # (x, y) index x * H + y
        held[t, (pos % g.h_out) * g.w_out + pos // g.h_out] = True
    return held


def reach(g: Geometry, ranges: np.ndarray) -> np.ndarray:
    """``[h_in * w_in, tiles]``: whether a spike at each input position (y * W + x) reaches
    each tile (some output of the tile has the position in its window)."""
    held = _output_positions(g, ranges).T.reshape(g.h_out, g.w_out, -1)
    out = np.zeros((g.h_in, g.w_in, len(ranges)), bool)
    (kh, kw), (sy, sx), (py, px), (dy, dx) = g.kernel, g.stride, g.padding, g.dilation
    yo, xo = np.arange(g.h_out), np.arange(g.w_out)
    for ky in range(kh):
        yi = yo * sy - py + ky * dy
        oky = (yi >= 0) & (yi < g.h_in)
        for kx in range(kw):
            xi = xo * sx - px + kx * dx
            okx = (xi >= 0) & (xi < g.w_in)
            sub = held[np.ix_(oky, okx)]
            out[np.ix_(yi[oky], xi[okx])] |= sub
    return out.reshape(g.positions_in, -1)


def channel_reach(g: Geometry, ranges: np.ndarray) -> np.ndarray:
    """``[c_in * h_in * w_in, tiles]``: the tiles each input channel's spike reaches."""
    r = reach(g, ranges)
    return np.tile(r, (g.c_in, 1))


__all__ = [
    "Geometry",
    "SPATIAL_TYPES",
    "channel_reach",
    "core_of_channel",
    "geometry",
    "is_spatial",
    "reach",
    "tile_channels",
    "tiles",
    "xyc_to_flat",
]
