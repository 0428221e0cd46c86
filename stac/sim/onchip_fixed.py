"""The simulator with the moved host ops in Lava's fixed point (:mod:`stac.sim.graded_fixed`).

:func:`fixed_host_ops` picks the nodes ``move_host_ops`` would put on the chip for a profile
(Residual and RMSNorm on Loihi 2), calibrates their ranges by running the simulator (float host
ops) on calibration windows at the run's T, chooses each node's scale, and returns simulator
overrides that compute those nodes in fixed point. Everything else is unchanged, as are the
counts (the cost model prices the moved ops the same either way).

*The first position's norms on the host* (``first_position="host"``, the default; a stac
design choice). A Llama-family model parks a massive activation in the residual stream of the
sequence's first token (the attention sink: SmolLM2's BOS carries |x| about 19,000 in channel
507 from layer 12 on, while every other position of the calibration windows stays below
1,200), and one scale per RMSNorm cannot fit both into NormVecDelay's 12-bit input. The first
token of a conversation is run once, in its prefill, never again in decoding (later tokens
read only its cached keys and values), so its RMSNorms run on the host in float and the
scales are calibrated on the other positions; every later token's norms run on the chip in
fixed point. ``first_position="chip"`` puts the first position on the chip as well (the
scales then cover it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import nir
import torch

from stac.errors import StacError
from stac.ir.nodes import Residual, RMSNorm
from stac.ir.passes.onchip import move_host_ops
from stac.profiles import Profile
from stac.sim.graded_fixed import (
    NormScale,
    ResidualScale,
    norm_scale,
    residual_fixed,
    residual_scale,
    rms_norm_fixed,
    scales_doc,
)
from stac.sim.semantics import SEMANTICS, RunContext, Semantics
from stac.sim.signal import Signal

log = logging.getLogger(__name__)

FIXED_TYPES = (Residual, RMSNorm)


def moved_nodes(graph: nir.NIRGraph, profile: Profile) -> list[str]:
    """The host ops ``move_host_ops`` puts on the chip; each must have a fixed-point model."""
    names = list(move_host_ops(graph, profile).metadata["chip_host_ops"])
    for n in names:
        if not isinstance(graph.nodes[n], FIXED_TYPES):
            raise StacError(
                f"node {n!r} ({type(graph.nodes[n]).__name__}) moves onto {profile.name} but "
                "stac has no fixed-point model for it (only Residual and RMSNorm)"
            )
    return names


#: Where the RMSNorms of a sequence's first position (position 0) run.
FIRST_POSITION = ("host", "chip")


@dataclass
class _Range:
    amax: float = 0.0
    sq_max: float = 0.0


@dataclass
class FixedHostOps:
    """Fixed-point overrides for the moved nodes at one T, and the scales chosen."""

    width: int
    scales: dict[str, Any] = field(default_factory=dict)
    first_position: str = "host"

    def overrides(self, graph: nir.NIRGraph) -> dict[str, Semantics]:
        return {n: self._semantics(graph.nodes[n]) for n in self.scales}

    def _semantics(self, node: Any) -> Semantics:
        width = self.width

        def residual(node: Residual, inp: Signal, ctx: RunContext, name: str, need: bool):
            _, stats = SEMANTICS[Residual](node, inp, ctx, name, need)
            value = residual_fixed(inp.value, self.scales[name], width)
            out = Signal(value, inp.per_step)
            return (out if need else Signal(out.mean(), False)), stats

        def rms_norm(node: RMSNorm, inp: Signal, ctx: RunContext, name: str, need: bool):
            host, stats = SEMANTICS[RMSNorm](node, inp, ctx, name, need)
            y = rms_norm_fixed(inp.mean(), ctx.params(node.weight), self.scales[name], width)
            if self.first_position == "host":
                first = _first(ctx, name)[..., None]
                y = torch.where(first, host.mean().to(y.dtype), y)
            return Signal(y, False), stats

        return residual if isinstance(node, Residual) else rms_norm

    def doc(self) -> dict[str, Any]:
        return {
            "state_bits": self.width,
            "first_position_norms": self.first_position,
            "scales": scales_doc(self.scales),
        }


def _first(ctx: RunContext, name: str) -> torch.Tensor:
    """[B, N] True at each sequence's first position (position 0)."""
    if ctx.positions is None:
        raise StacError(f"{name}: the fixed-point norms need the tokens' positions")
    return ctx.positions == 0


def _recorder(ranges: dict[str, _Range], first_position: str) -> Semantics:
    def record(node: Any, inp: Signal, ctx: RunContext, name: str, need: bool):
        r = ranges.setdefault(name, _Range())
        if isinstance(node, RMSNorm):
            x = inp.mean()
            if first_position == "host":  # those positions' norms run on the host
                x = x[~_first(ctx, name)]
            if not x.numel():
                return SEMANTICS[type(node)](node, inp, ctx, name, need)
            r.sq_max = max(r.sq_max, float(x.double().pow(2).sum(-1).max()))
            r.amax = max(r.amax, float(x.abs().max()))
        else:
            r.amax = max(r.amax, float(inp.value.abs().max()))
        return SEMANTICS[type(node)](node, inp, ctx, name, need)

    return record


def fixed_host_ops(
    sim: Any,
    profile: Profile,
    calibration: list[torch.Tensor],
    steps: int,
    first_position: str = "host",
) -> FixedHostOps:
    """Calibrate the moved nodes of ``sim.graph`` on ``calibration`` windows at ``steps`` and
    choose their scales (``sim`` is a :class:`stac.sim.simulator.Simulator`; its overrides are
    restored). ``first_position``: where the RMSNorms of position 0 run (module doc)."""
    if first_position not in FIRST_POSITION:
        raise StacError(
            f"first-position norms {first_position!r}: give one of {', '.join(FIRST_POSITION)}"
        )
    graph = sim.graph
    names = moved_nodes(graph, profile)
    if not calibration:
        raise StacError("the fixed-point host ops need at least one calibration window")
    width = int(profile.get("fixed_point", "state_bits"))
    ranges: dict[str, _Range] = {}
    saved = dict(sim.overrides)
    sim.overrides.update({n: _recorder(ranges, first_position) for n in names})
    try:
        for chunk in calibration:
            sim.run(RunContext(chunk[None], steps=steps))
    finally:
        sim.overrides = saved
    scales: dict[str, Any] = {}
    for n in names:
        node, r = graph.nodes[n], ranges.get(n, _Range())
        if isinstance(node, RMSNorm):
            size = int(node.weight.shape[0])
            scales[n] = norm_scale(r.amax, r.sq_max, size, node.eps, width)
        else:
            scales[n] = residual_scale(r.amax, width)
    log.info(
        "fixed-point host ops: %d nodes calibrated on %d windows", len(names), len(calibration)
    )
    return FixedHostOps(width, scales, first_position)


__all__ = [
    "FIRST_POSITION",
    "FIXED_TYPES",
    "FixedHostOps",
    "NormScale",
    "ResidualScale",
    "fixed_host_ops",
    "moved_nodes",
]
