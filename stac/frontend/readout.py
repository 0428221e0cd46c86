"""Full mode's ``--readout-bits``: the values leaving the chip as graded spikes of a set width.

A linear map on the chip whose output a host op reads (attention reads q, k, v; the SiLU gate
reads gate and up; the residual adds read o_proj and down; the output reads the logits) sends
each channel's token sum as an integer level. Without a readout the sums are unbounded: the
artifact bounds them by its weights and payloads (33 to 39 bits for SmolLM2's gate/up maps),
wider than any graded spike. :func:`add_readouts` puts a :class:`~stac.ir.nodes.Readout` of
``bits`` on every such edge, its shift set on the calibration windows by running the converted
graph in the simulator.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import nir
import numpy as np
import torch

from stac.errors import StacError
from stac.ir.graph import make_graph, predecessors, successors
from stac.ir.nodes import Readout, SignedIF, StacNode
from stac.sim.semantics import SEMANTICS, RunContext
from stac.sim.signal import Signal
from stac.sim.simulator import Simulator

log = logging.getLogger(__name__)

#: Suffix of a readout's node name after its linear map's.
SUFFIX = "_readout"


def _reads_value(node: Any) -> bool:
    """Whether ``node`` consumes a value rather than spikes: a host op or the graph output."""
    return isinstance(node, nir.Output) or (isinstance(node, StacNode) and node.host_op)


def readout_sources(graph: nir.NIRGraph) -> dict[str, list[str]]:
    """Each linear map driven by spikes with the host ops that read it."""
    post, pre = successors(graph), predecessors(graph)
    out: dict[str, list[str]] = {}
    for name, node in graph.nodes.items():
        if not isinstance(node, (nir.Linear, nir.Affine)):
            continue
        if not pre[name] or not all(isinstance(graph.nodes[p], SignedIF) for p in pre[name]):
            continue
        readers = [s for s in post[name] if _reads_value(graph.nodes[s])]
        if readers:
            out[name] = readers
    return out


def accumulator_unit(graph: nir.NIRGraph, name: str) -> np.ndarray:
    """Per output channel of linear map ``name``: the value of one unit of its integer
    accumulator over a token (the row's weight scale times the driving encoder's smallest
    threshold), or a StacError saying why there is none."""
    node = graph.nodes[name]
    (enc_name,) = predecessors(graph)[name]
    enc = graph.nodes[enc_name]
    if not enc.onset_drive or enc.token_gain:
        raise StacError(
            f"--readout-bits: {name!r} is driven by {enc_name!r}, which is not an onset-driven "
            "graded encoder without token gain (full mode's)"
        )
    quant = (node.metadata or {}).get("quant")
    scale = np.asarray(quant.get("scale") if isinstance(quant, dict) else None, dtype=np.float64)
    rows = np.asarray(node.weight).shape[0]
    if scale.shape != (rows,) or not np.all(scale > 0):
        raise StacError(f"--readout-bits: {name!r} has no per-row weight scale")
    return scale * float(np.asarray(enc.threshold, dtype=np.float64).min())


def calibrated_peaks(
    graph: nir.NIRGraph,
    windows: list[torch.Tensor],
    steps: int,
    units: dict[str, np.ndarray],
) -> dict[str, float]:
    """The largest |token sum| of each map in ``units`` on ``windows``, in accumulator units."""
    peaks = dict.fromkeys(units, 0.0)

    def recorder(name: str) -> Any:
        unit = torch.as_tensor(units[name], dtype=torch.float32)

        def run(node: Any, inp: Signal, ctx: RunContext, n: str, need: bool):
            out, stats = SEMANTICS[type(node)](node, inp, ctx, n, need)
            peak = float((out.mean().abs() * ctx.steps / unit).max())
            peaks[name] = max(peaks[name], peak)
            return out, stats

        return run

    sim = Simulator(graph, overrides={n: recorder(n) for n in units})
    for ids in windows:
        sim.run(RunContext(token_ids=ids.reshape(1, -1), steps=steps))
    return peaks


def shift_for(peak: float, headroom: float, bits: int) -> int:
    """The smallest right shift e >= 0 with ``headroom * peak / 2**e`` within a payload of
    ``bits`` (sign and magnitude)."""
    top = 2 ** (bits - 1) - 1
    need = headroom * peak / top
    return max(0, math.ceil(math.log2(need))) if need > 0 else 0


def add_readouts(
    graph: nir.NIRGraph, windows: list[torch.Tensor], steps: int, bits: int, headroom: float
) -> nir.NIRGraph:
    """``graph`` with a :class:`Readout` of ``bits`` between every spike-driven linear map and
    the host ops that read it (see the module doc); the shifts are recorded in the graph's
    ``metadata["readout"]``."""
    sources = readout_sources(graph)
    units = {n: accumulator_unit(graph, n) for n in sources}
    peaks = calibrated_peaks(graph, windows, steps, units)
    added: dict[str, Readout] = {}
    edges = [e for e in graph.edges if not (e[0] in sources and e[1] in sources[e[0]])]
    shifts: dict[str, int] = {}
    for name, readers in sources.items():
        shifts[name] = shift_for(peaks[name], headroom, bits)
        step = units[name] * 2.0 ** shifts[name]
        ro = name + SUFFIX
        if ro in graph.nodes:
            raise StacError(f"--readout-bits: the graph already has a node named {ro!r}")
        added[ro] = Readout(step, bits, metadata={"shift": shifts[name], "peak": peaks[name]})
        edges.append((name, ro))
        edges.extend((ro, r) for r in readers)
    log.info(
        "readouts: %d maps, %d bits, shifts %s",
        len(sources),
        bits,
        {e: sum(1 for s in shifts.values() if s == e) for e in sorted(set(shifts.values()))},
    )
    nodes: dict[str, Any] = {}
    for name, node in graph.nodes.items():  # each readout right after its map
        nodes[name] = node
        if name + SUFFIX in added:
            nodes[name + SUFFIX] = added[name + SUFFIX]
    meta = {**graph.metadata, "readout": {"bits": bits, "shifts": shifts}}
    return make_graph(nodes, edges, meta)


__all__ = [
    "SUFFIX",
    "accumulator_unit",
    "add_readouts",
    "calibrated_peaks",
    "readout_sources",
    "shift_for",
]
