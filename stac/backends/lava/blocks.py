r"""A converted transformer's chip part as integer Loihi blocks, independent of Lava.

A converted graph (:mod:`stac.frontend.convert`) alternates host ops (norms, attention, the
gated activation, residual adds) with *blocks*: one :class:`stac.ir.nodes.SignedIF` encoder and
the Linear / Affine maps it feeds. A block is what runs on the chip; the host computes each
encoder's drive and reads each map's accumulated output back (glue between runs). This module
turns every block of a quantised graph into integers (:func:`block_plan`);
:mod:`stac.backends.lava.drive` holds the host glue (:func:`~stac.backends.lava.drive.encode_drive`,
:func:`~stac.backends.lava.drive.decode`), :mod:`stac.backends.lava.fixed` runs a block with stac's
bit-accurate steps and :mod:`stac.backends.lava.backend` emits it as Lava processes; the two
agree bit for bit (tests/test_lava_blocks.py).

A block on the chip, per token of T steps (the encoder resets at each token's first step, as
the reference simulator starts every token from reset):

* **encoder** (a graded, multi-threshold signed IF; Lava has no such neuron, so the backend
  brings a ``fixed_pt`` ProcessModel for it): ``v <- sat(v + d)``,
  ``s = clamp(floor((2v + theta) / (2 theta)), -K, K)``, ``v <- v - s theta``, and the spike
  carries the payload ``s * m_c``, where ``m_c`` is the channel's threshold in units of the
  layer's smallest one (``theta_c = m_c * unit``; full mode makes them powers of two, the
  quantise pass puts simplified mode's on an integer grid);
* **Dense** (Lava's ``Dense`` in graded mode): the mixed-sign 8-bit weights ``q`` of each row
  (``W = q * scale_r``, from the quantise pass) are stored doubled, ``2q``, because Lava's
  fixed-point Dense clears a mixed-sign weight's lowest bit, with ``weight_exp = -1`` to halve
  the sum again (exact: every product is even); it sends each step's accumulation one step
  later;
* **readout** (Lava's ``Sigma``): ``sigma <- sigma + a_in``; the host reads it at token
  boundaries, so a token's sum is the difference of two reads.

Host glue. Onset-driven (full-mode) encoders get chip threshold 1 and, at the token's first
step, the integer ``n = floor(T x / theta_c + 1/2)`` that the reference neuron computes in its
first step (more than the potential holds follows at K per step, :func:`encode_drive`); the
chip then drains it at K per step exactly as the reference does. Held drive
(simplified mode) is quantised per channel onto a grid of ``2**b`` steps per threshold,
``d = round(x 2**b / (g theta_c))`` every step, with ``b`` set so that T steps of up to four
thresholds fit the ``state_bits`` potential. The token's output is
``y_r = sum_t sum_c q_rc s_tc m_c * scale_r * unit * g / T + bias_r`` (``g``: the per-token
gain when the encoder has ``token_gain``). Integer arithmetic follows Lava's Python models:
32-bit products and sums that wrap. The profile's narrower widths (``input_bits`` for a Dense
output, ``state_bits`` for the readout) are not enforced by those models; every run counts the
values beyond them (:func:`width_counts`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from stac.backends.lava.config import LavaLimits
from stac.errors import StacError
from stac.ir.graph import predecessors, successors
from stac.ir.nodes import SignedIF
from stac.sim import fixed_point as fx
from stac.sim.neurons import dead_zone_levels

DENSE_TYPES = (nir.Linear, nir.Affine)
#: The Lava encoder's output ports, one per payload part (the GradedSignedIF process declares
#: them); the profile's ``lava.payload_parts`` may not exceed their number.
PART_PORTS = ("s_out", "s_out1", "s_out2", "s_out3")
#: Relative tolerance when reading integers back from float parameters: a few float32 roundings
#: (a threshold is a float32 multiple of its unit), far below the fractional part 1/q that a
#: wrong unit leaves on a level q < 2**20.
INT_TOL = 1e-6


@dataclass
class DenseBlock:
    """One Linear / Affine behind an encoder, as Lava's graded ``Dense`` + ``Sigma``."""

    name: str
    weights: np.ndarray  # [out, in] int64, the doubled 8-bit row weights 2q (even)
    weight_exp: int  # -1: halves the doubled sum back
    scale: np.ndarray  # [out] float64: the value of one accumulated unit in each row
    bias: np.ndarray | None  # [out] float64, added by the host when it reads the output

    @property
    def out_features(self) -> int:
        return int(self.weights.shape[0])


@dataclass
class ChannelGroup:
    """Channels of an encoder emitted as one Lava encoder process, with their own Dense and
    Sigma per map. A spike of channel c carries ``s * mult_c``; the host multiplies the group's
    readouts by ``factor``, so channel c's threshold is ``mult_c * factor`` units."""

    index: np.ndarray  # [k] int64 channel indices
    mult: np.ndarray  # [k] int64 payload multiplier per channel
    factor: int


@dataclass
class EncoderBlock:
    """A SignedIF encoder and the maps it feeds, in integers."""

    name: str
    threshold: np.ndarray  # [n] float32: the graph's per-channel thresholds theta_c
    chip_theta: int  # the chip neuron's integer threshold (1 for onset drive, 2**b held)
    groups: list[ChannelGroup]
    max_payload: int  # K
    onset: bool
    token_gain: bool
    dense: list[DenseBlock]
    gain_ratio: float = 1.0  # SignedIF.gain_ratio and gain_floor (the host's per-token gain)
    gain_floor: float = 1.0
    split_bits: int = 0  # k > 0: each payload s * mult is sent as base-2**k digits
    parts: int = 1
    dead: np.ndarray | None = None  # [n] int64: the chip's dead zone D (|v| < D is silent)

    @property
    def size(self) -> int:
        return int(self.threshold.size)

    @property
    def payload_bits(self) -> int:
        """Sign plus magnitude bits of the widest message: ``K * max(mult)``, or its widest
        base-``2**k`` digit when the payload is split."""
        top = self.max_payload * max(int(g.mult.max()) for g in self.groups)
        if self.parts > 1:
            top = max((1 << self.split_bits) - 1, top >> (self.split_bits * (self.parts - 1)))
        return 1 + int(top).bit_length()

    def mult(self) -> np.ndarray:
        """Each channel's in-group payload multiplier, in channel order."""
        out = np.zeros(self.size, np.int64)
        for g in self.groups:
            out[g.index] = g.mult
        return out


def readout_key(dense: str, group: int, part: int = 0) -> str:
    """The name of map ``dense``'s readout for channel group ``group`` (and payload part)."""
    return f"{dense}#{group}" + (f".{part}" if part else "")


def split_payload(s: np.ndarray, bits: int, parts: int) -> list[np.ndarray]:
    """``s`` as ``parts`` integers with ``s = sum_j s_j 2**(j bits)``: the low parts in
    ``[0, 2**bits)``, the top part signed (two's complement digits, exact for any sign)."""
    if parts == 1:
        return [s]
    out, rest = [], s
    for _ in range(parts - 1):
        out.append(rest & ((1 << bits) - 1))
        rest = rest >> bits
    return out + [rest]


@dataclass
class BlockPlan:
    """Every block of a graph, by encoder name, and the encoder each map belongs to."""

    blocks: dict[str, EncoderBlock]
    owner: dict[str, str]  # Linear / Affine name -> encoder name
    fmt: fx.LoihiFormat


@dataclass
class BlockTrace:
    """One block run over ``steps = tokens * T + 1`` steps (the last flushes the Dense delay)."""

    v: np.ndarray  # [steps, n] int64: encoder potential after each step
    payload: np.ndarray  # [steps, n] int64: payload sent each step (s * m)
    sigma: dict[str, np.ndarray]  # readout_key -> [steps, out] int64, readout after each step


# --- the plan ----------------------------------------------------------------------------------


def _payload_units(name: str, node: SignedIF) -> tuple[np.ndarray, float]:
    """(m_c as integers, unit) with ``theta_c = m_c * unit``, or a StacError naming ``name``."""
    theta = np.asarray(node.threshold, dtype=np.float64)
    lo, hi = float(theta.min()), float(theta.max())
    # The smallest threshold (full mode's power-of-two multiples), else the top of a grid of
    # 2**b - 1 levels (quantise_uniform's), from the fewest bits that hold the spread.
    bits = max(1, math.ceil(math.log2(hi / lo + 1)))
    for unit in (lo, *(hi / (2**b - 1) for b in range(bits, 33))):
        m = theta / unit
        if _integral(m) and np.rint(m).min() >= 1:
            return np.rint(m).astype(np.int64), unit
    raise StacError(
        f"{name}: its thresholds are not integer multiples of one unit "
        f"(max/min {theta.max() / lo:.4g}), so its spikes cannot carry their values "
        "as integer payloads; quantise the graph for a graded-spike profile "
        "(stac.ir.passes.run_passes)"
    )


def channel_groups(m: np.ndarray, max_groups: int) -> list[ChannelGroup]:
    """Groups for thresholds of ``m`` units: an encoder whose thresholds take at most
    ``max_groups`` (the profile's ``lava.channel_groups``) power-of-two values is split into one
    channel group per value (payloads then carry counts only, and each group's readout stays far
    inside 32 bits); otherwise it is one group whose payloads carry their thresholds."""
    values = np.unique(m)
    pow2 = bool(np.all((values & (values - 1)) == 0))
    if pow2 and len(values) <= max_groups:
        return [
            ChannelGroup(np.flatnonzero(m == v), np.ones(int((m == v).sum()), np.int64), int(v))
            for v in values
        ]
    return [ChannelGroup(np.arange(m.size), m.astype(np.int64), 1)]


def _integral(m: np.ndarray) -> bool:
    return bool(np.all(np.abs(m - np.rint(m)) <= INT_TOL * np.maximum(np.abs(m), 1.0)))


def _dense(name: str, node: Any, fmt: fx.LoihiFormat, unit: float) -> DenseBlock:
    quant = (node.metadata or {}).get("quant") or {}
    if quant.get("folded") or "scale" not in quant:
        raise StacError(
            f"{name}: no per-row weight scale in its metadata; run the quantise pass "
            "for a graded-spike profile before the lava backend"
        )
    scale = np.asarray(quant["scale"], dtype=np.float64).reshape(-1)
    w = np.asarray(node.weight, dtype=np.float64).reshape(node.weight.shape[0], -1)
    q = w / scale[:, None]
    qi = np.rint(q)
    top = (1 << (fmt.weight_bits - 1)) - 1
    if not np.allclose(q, qi, rtol=0, atol=1e-3) or np.abs(qi).max() > top:
        raise StacError(
            f"{name}: its weights are not {fmt.weight_bits}-bit integers times the "
            "row scale in its metadata"
        )
    bias = np.asarray(node.bias, dtype=np.float64) if isinstance(node, nir.Affine) else None
    return DenseBlock(name, (2 * qi).astype(np.int64), -1, scale * unit, bias)


def _row_sums(block: EncoderBlock) -> tuple[float, float]:
    """(largest row sum of |q| over the maps and groups, the same times the group's largest
    multiplier)."""
    rows = with_mult = 0.0
    for d in block.dense:
        for g in block.groups:
            r = float(np.abs(d.weights[:, g.index]).sum(axis=1).max(initial=0)) / 2
            rows, with_mult = max(rows, r), max(with_mult, r * float(g.mult.max()))
    return rows, with_mult


def _bound(block: EncoderBlock, steps: int) -> float:
    """The largest token sum of any readout of the unsplit block: T steps of K times the row
    sums times the multiplier."""
    return steps * float(block.max_payload) * _row_sums(block)[1]


def payload_split(block: EncoderBlock, steps: int, limits: LavaLimits) -> tuple[int, int]:
    """(k, parts): no split when every readout stays within ``limits.readout_limit``; else each
    payload value ``s * mult`` is sent as base-``2**k`` digits (:func:`split_payload`), with the
    widest k for which T steps of a digit stay within the limit, on ``parts`` ports (each message
    is priced as one spike message). ``parts`` beyond ``limits.payload_parts`` means the block
    cannot be emitted."""
    limit = limits.readout_limit
    if _bound(block, steps) < limit:
        return 0, 1
    rows = _row_sums(block)[0]
    k = int(math.floor(math.log2(limit / (steps * rows)))) if rows else 0
    if k < 1:
        return 0, limits.payload_parts + 1
    top = block.max_payload * max(int(g.mult.max()) for g in block.groups)
    parts = 1
    while steps * float(top >> (k * (parts - 1))) * rows >= limit:
        parts += 1
    return k, parts


def held_theta(fmt: fx.LoihiFormat, steps: int, headroom: int) -> int:
    """The chip threshold ``2**b`` for a held drive: T steps of ``headroom`` thresholds (the
    profile's ``lava.held_headroom``) fit the potential."""
    need = (steps * headroom).bit_length()
    b = fmt.state_bits - 1 - need
    if b < 1:
        raise StacError(f"a {fmt.state_bits}-bit potential cannot hold {steps} steps of held drive")
    return 1 << b


def _dead_zone(name: str, node: SignedIF) -> np.ndarray | None:
    """The chip's integer dead zone D per neuron, or None. Onset drive only: the host sends
    the level ``n = floor(T x / theta_c + 1/2)`` to a neuron of threshold 1, whose potential
    counts in thresholds, so ``d = (D - 1/2) theta_c`` (a token gain scales d and theta_c
    alike, D unchanged). A held drive's potential counts in ``theta_c / 2**b`` and a dead zone
    there is refused by name (not built)."""
    if node.dead_zone is None:
        return None
    if not node.onset_drive:
        raise StacError(
            f"{name}: a dead zone on a held-drive encoder is not lowered to Lava "
            "(only onset drive, full mode)"
        )
    levels: np.ndarray = dead_zone_levels(node.dead_zone, node.threshold, name)
    return levels


def block_plan(
    graph: nir.NIRGraph, fmt: fx.LoihiFormat, steps: int, limits: LavaLimits, payload_bits: int = 32
) -> BlockPlan:
    """Integer blocks for every SignedIF of a quantised converted graph, within ``limits`` (the
    profile's ``[lava]`` section).

    Raises one StacError naming every chip node that is not part of a block (a map fed by
    anything but one encoder, an encoder feeding anything but maps), every encoder whose
    payload needs more than ``payload_bits`` bits, and every map without integer weights.
    """
    pre, post = predecessors(graph), successors(graph)
    errors: list[str] = []
    blocks: dict[str, EncoderBlock] = {}
    owner: dict[str, str] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, DENSE_TYPES):
            feeds = pre[name]
            if len(feeds) != 1 or not isinstance(graph.nodes[feeds[0]], SignedIF):
                errors.append(
                    f"{name} ({type(node).__name__}): fed by {feeds or 'nothing'}, "
                    "not by one SignedIF encoder"
                )
            continue
        if not isinstance(node, SignedIF):
            continue
        bad = [s for s in post[name] if not isinstance(graph.nodes[s], DENSE_TYPES)]
        if bad or not post[name]:
            errors.append(
                f"{name} (SignedIF): feeds {bad or 'nothing'}; an encoder feeds only "
                "Linear / Affine maps"
            )
            continue
        try:
            mult, unit = _payload_units(name, node)
            dense = [_dense(s, graph.nodes[s], fmt, unit) for s in post[name]]
            dead = _dead_zone(name, node)
        except StacError as exc:
            errors.append(str(exc))
            continue
        block = EncoderBlock(
            name,
            np.asarray(node.threshold, np.float32),
            1 if node.onset_drive else held_theta(fmt, steps, limits.held_headroom),
            channel_groups(mult, limits.channel_groups),
            int(node.max_payload),
            bool(node.onset_drive),
            bool(node.token_gain),
            dense,
            gain_ratio=float(node.gain_ratio),
            gain_floor=float(node.gain_floor),
            dead=dead,
        )
        block.split_bits, block.parts = payload_split(block, steps, limits)
        if block.parts > limits.payload_parts:
            errors.append(
                f"{name}: a token's readout can reach {_bound(block, steps):.3g}, "
                f"beyond Lava's 32-bit Dense and Sigma even with its payload split "
                f"into {limits.payload_parts} parts"
            )
            continue
        if block.max_payload > fmt.uv_max - 1:
            errors.append(
                f"{name}: its payload K = {block.max_payload} exceeds what the "
                f"{fmt.state_bits}-bit potential holds"
            )
            continue
        if block.payload_bits > payload_bits:
            errors.append(
                f"{name}: its payloads need {block.payload_bits} bits, more than the "
                f"{payload_bits} a spike carries"
            )
            continue
        blocks[name] = block
        owner.update({d.name: name for d in dense})
    if limits.payload_parts > len(PART_PORTS):
        errors.append(
            f"lava.payload_parts = {limits.payload_parts}: the GradedSignedIF process "
            f"has {len(PART_PORTS)} payload ports"
        )
    if errors:
        shown = "; ".join(errors[:6]) + (f"; and {len(errors) - 6} more" if len(errors) > 6 else "")
        raise StacError(
            f"the lava backend cannot emit {len(errors)} chip node(s) as blocks: {shown}"
        )
    return BlockPlan(blocks, owner, fmt)


__all__ = [
    "BlockPlan",
    "BlockTrace",
    "ChannelGroup",
    "DenseBlock",
    "EncoderBlock",
    "PART_PORTS",
    "block_plan",
    "channel_groups",
    "held_theta",
    "payload_split",
    "readout_key",
    "split_payload",
]
