"""Place pass: put the partition's cores on the chips' meshes so that spikes travel few hops.

The mesh: each chip is ``mesh.tiles_x x mesh.tiles_y`` tiles of ``mesh.cores_per_tile`` cores
(``chip.cores_per_chip`` of those slots are used); chips sit on a square-ish grid and their
meshes join edge to edge (an assumption: boards differ). A message between two cores travels
the Manhattan distance between their tiles (0 inside a tile); ``chip crossings`` count the
chip boundaries on the way.

Routes: a spike of a channel goes once to every core that holds synapses of that channel (a
multicast per destination core) -- for a convolution or pooling layer, only the tiles whose
receptive fields hold the channel's position (:mod:`stac.ir.passes.spatial`), counted channel
by channel; a neuron layer sharing its convolution's cores gets no route from it;
partial sums go from column-block cores to accumulators;
a synaptic node's outputs go to the neuron cores that hold the same channels. Traffic is
``sum over routes of channels x rate x hops``, rate = ``node.metadata["spike_rate"]`` (spikes
per channel per timestep) when an earlier run recorded one, else 1 -- stated in the report.

Method: (1) *sequential*: cores in the partition's data-flow order, filled chip by chip along a
boustrophedon path over the tiles (the baseline); (2) each producer's cores moved into the
middle of the cores they feed; (3) greedy pairwise swaps that lower the traffic (bounded
number of trials and of routes read, fixed seed). Both the baseline's and the final traffic
are reported in the graph's :class:`~stac.ir.results.Placement` (``placement_of(graph)``), and
each chip node's :class:`~stac.ir.results.NodePlacement` gets ``hops_per_spike``,
``chip_crossings_per_spike`` and ``dest_cores_per_spike`` (summed over its destination cores)
for the cost model.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import nir
import numpy as np
from tqdm import tqdm

from stac.ir.graph import output_shape, successors
from stac.ir.passes.common import issue, rebuild, with_metadata
from stac.ir.passes.partition import BLOCK_COLUMNS
from stac.ir.passes.spatial import channel_reach, core_of_channel, geometry, is_spatial
from stac.ir.results import (
    Hops,
    NodePlacement,
    Placement,
    Traffic,
    node_placement,
    partition_of,
    placement_of,
)
from stac.profiles import Profile

log = logging.getLogger(__name__)
_R0, _R1, _C0, _C1 = (BLOCK_COLUMNS.index(k) for k in ("row0", "row1", "col0", "col1"))
#: Swap trials per core in the refinement, and an overall cap (keeps big models fast).
SWAPS_PER_CORE, MAX_SWAPS = 8, 200_000
#: A cap on the routes the swap trials read in all (a trial reads both cores' routes), so
#: that cores with thousands of routes each (large convolutions) stay fast too.
MAX_ROUTE_READS = 20_000_000


def slot_coordinates(profile: Profile, chips: int) -> np.ndarray:
    """``[chips * cores_per_chip, 4]``: global tile x, global tile y, chip x, chip y per slot,
    slots in fill order (chip by chip; tiles along a boustrophedon path; cores in a tile)."""
    m, per_chip = profile.values["mesh"], int(profile.get("chip", "cores_per_chip"))
    tx, ty, cpt = int(m["tiles_x"]), int(m["tiles_y"]), int(m["cores_per_tile"])
    tiles = [(x if y % 2 == 0 else tx - 1 - x, y) for y in range(ty) for x in range(tx)]
    local = np.array([t for t in tiles for _ in range(cpt)][:per_chip], dtype=np.int64)
    gx = max(1, math.ceil(math.sqrt(chips)))
    rows = []
    for c in range(chips):
        cy, cx = divmod(c, gx)
        cx = cx if cy % 2 == 0 else gx - 1 - cx  # chips also along a boustrophedon path
        rows.append(
            np.column_stack(
                [
                    local[:, 0] + cx * tx,
                    local[:, 1] + cy * ty,
                    np.full(len(local), cx),
                    np.full(len(local), cy),
                ]
            )
        )
    return np.concatenate(rows) if rows else np.zeros((0, 4), np.int64)


def _placed(node: Any) -> NodePlacement:
    p = node_placement(node)
    if p is None:
        raise ValueError("place needs every node partitioned first")
    return p


def _blocks(p: NodePlacement) -> np.ndarray:
    return p.blocks if p.blocks is not None else np.zeros((0, len(BLOCK_COLUMNS)), np.int64)


def _channel_blocks(node: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """(global core ids, [k, 2] channel ranges, channels) of the cores that emit a node's
    output: its neuron cores, or a synaptic node's accumulators / single column block."""
    p = _placed(node)
    b = _blocks(p)
    ids = p.first_core + np.arange(b.shape[0])
    if p.col_blocks is not None:
        keep = b[:, _C0] == -1 if p.col_blocks > 1 else np.ones(len(b), bool)
        ids, b = ids[keep], b[keep]
    channels = int(b[:, _R1].max()) if len(b) else 0
    return ids, b[:, [_R0, _R1]], channels


def _routes(graph: nir.NIRGraph) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every core-to-core route: (source core, destination core, channels x rate, node index)."""
    post = successors(graph)
    names = list(graph.nodes)
    chip = {n for n, v in graph.nodes.items() if _placed(v).on_chip}

    def consumers(name: str) -> list[str]:
        out = []
        for s in post[name]:
            if s in chip and _placed(graph.nodes[s]).cores == 0:
                out += consumers(s)  # a relabelling (Flatten) passes channels through
            elif s in chip:
                out.append(s)
        return out

    src, dst, weight, owner = [], [], [], []

    def add(a_ids, a_rng, a_n, b_ids, b_rng, b_n, rate, who):
        if not len(a_ids) or not len(b_ids) or not a_n or not b_n:
            return
        lo = a_rng[:, None, 0] * b_n / a_n  # map source channel ranges onto the consumer's
        hi = a_rng[:, None, 1] * b_n / a_n
        overlap = np.minimum(hi, b_rng[None, :, 1]) - np.maximum(lo, b_rng[None, :, 0])
        i, j = np.nonzero(overlap > 0)
        src.append(a_ids[i])
        dst.append(b_ids[j])
        weight.append(overlap[i, j] * a_n / b_n * rate)
        owner.append(np.full(len(i), who))

    def exact(a_ids, core, b_ids, counts_of, rate, who):
        """Routes from per-channel source cores ``core`` to destination blocks, with the
        channel counts ``counts_of`` gives ([source cores, destination blocks])."""
        counts = counts_of(core, len(a_ids))
        i, j = np.nonzero(counts)
        src.append(a_ids[i])
        dst.append(b_ids[j])
        weight.append(counts[i, j] * rate)
        owner.append(np.full(len(i), who))

    for name in chip:
        node = graph.nodes[name]
        p = _placed(node)
        if p.cores == 0:
            continue
        who = names.index(name)
        b = _blocks(p)
        ids = p.first_core + np.arange(b.shape[0])
        if (p.col_blocks or 1) > 1:  # partial sums to accumulators, every step
            part, acc = b[:, _C0] >= 0, b[:, _C0] == -1
            add(
                ids[part],
                b[part][:, [_R0, _R1]],
                int(b[:, _R1].max()),
                ids[acc],
                b[acc][:, [_R0, _R1]],
                int(b[:, _R1].max()),
                1.0,
                who,
            )
        rate = float(node.metadata.get("spike_rate", 1.0)) if not p.synaptic else 1.0
        a_ids, a_rng, a_n = _channel_blocks(node)
        tiled = p.shares_cores_of is not None or is_spatial(node)
        core = core_of_channel(a_rng, a_n, output_shape(node) if tiled else None)
        for s in consumers(name):
            sp = _placed(graph.nodes[s])
            if sp.shares_cores_of == name:
                continue  # its neurons are this node's compartments: no route
            sb = _blocks(sp)
            s_ids = sp.first_core + np.arange(sb.shape[0])
            if is_spatial(graph.nodes[s]):  # a spike reaches the tiles of its window only
                r = channel_reach(geometry(graph.nodes[s]), sb[:, [_R0, _R1]]).astype(np.int64)
                if len(r) == len(core):
                    exact(a_ids, core, s_ids, lambda c, n, r=r: _sum_rows(r, c, n), rate, who)
                    continue
            keep = sb[:, _C0] >= 0 if sp.synaptic else np.ones(len(sb), bool)
            cols = [_C0, _C1] if sp.synaptic else [_R0, _R1]
            if tiled:  # channels in (x, y, c) order: count them per destination block
                exact(
                    a_ids,
                    core,
                    s_ids[keep],
                    lambda c, n, rng=sb[keep][:, cols]: _range_counts(c, n, rng),
                    rate,
                    who,
                )
            else:  # a channel feeds every core holding its column (or its rows)
                add(
                    a_ids,
                    a_rng,
                    a_n,
                    s_ids[keep],
                    sb[keep][:, cols],
                    int(sb[keep][:, cols[1]].max()),
                    rate,
                    who,
                )
    if not src:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0), z
    return (np.concatenate(src), np.concatenate(dst), np.concatenate(weight), np.concatenate(owner))


def _sum_rows(rows: np.ndarray, core: np.ndarray, cores: int) -> np.ndarray:
    """``[cores, k]``: ``rows`` (one per channel) summed per source core."""
    out = np.zeros((cores, rows.shape[1]), np.int64)
    np.add.at(out, core, rows)
    return out


def _range_counts(core: np.ndarray, cores: int, ranges: np.ndarray) -> np.ndarray:
    """``[cores, blocks]``: channels of each source core inside each block's range."""
    return np.stack([np.bincount(core[a:b], minlength=cores) for a, b in ranges], axis=1)


def _hops(xy: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.abs(xy[a] - xy[b])
    return d[:, 0] + d[:, 1], d[:, 2] + d[:, 3]


def _interleave(cores: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """A fill order in which each producer core sits in the middle of the cores it feeds."""
    key = np.arange(cores, dtype=np.float64)
    if len(src):
        total = np.bincount(src, weights=dst.astype(np.float64), minlength=cores)
        count = np.bincount(src, minlength=cores)
        has = count > 0
        key[has] = total[has] / count[has] + 0.5  # the mean position of its destinations
    return np.argsort(key, kind="stable")  # order[k] = core in the k-th slot


def _refine(
    slots: np.ndarray,
    xy: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    w: np.ndarray,
    free: int,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Greedy pairwise swaps of cores (and into free slots) that lower the weighted hops."""
    cores = len(slots)
    if not len(src) or cores < 2:
        return slots, 0
    order = np.argsort(src, kind="stable")
    e_src, e_dst, e_w = src[order], dst[order], w[order]
    start_out = np.searchsorted(e_src, np.arange(cores + 1))
    order_in = np.argsort(dst, kind="stable")
    i_src, i_dst, i_w = src[order_in], dst[order_in], w[order_in]
    start_in = np.searchsorted(i_dst, np.arange(cores + 1))

    def cost_of(core: int, slot: int) -> float:
        """Weighted hops of ``core``'s routes with it at ``slot`` (others where they are)."""
        s = slots
        a, b = start_out[core], start_out[core + 1]
        c, d = start_in[core], start_in[core + 1]
        p = xy[slot, :2]
        out = np.abs(xy[s[e_dst[a:b]], :2] - p).sum(axis=1) @ e_w[a:b]
        inn = np.abs(xy[s[i_src[c:d]], :2] - p).sum(axis=1) @ i_w[c:d]
        return float(out + inn)

    rng = np.random.default_rng(seed)
    mean_degree = 2.0 * len(src) / cores  # routes a core has, out and in
    trials = min(SWAPS_PER_CORE * cores, MAX_SWAPS, int(MAX_ROUTE_READS / (4 * mean_degree)))
    n_slots = cores + free
    slot_owner = np.full(n_slots, -1)
    slot_owner[slots] = np.arange(cores)
    accepted = 0
    for _ in tqdm(range(trials), desc="placing", unit="swap", leave=False, disable=trials < 20_000):
        i = int(rng.integers(cores))
        deg = start_out[i + 1] - start_out[i] + start_in[i + 1] - start_in[i]
        if deg == 0:
            continue
        # a target slot near where i's partners are
        partners = np.concatenate(
            [e_dst[start_out[i] : start_out[i + 1]], i_src[start_in[i] : start_in[i + 1]]]
        )
        target = slots[int(partners[rng.integers(len(partners))])]
        t = int(np.clip(target + rng.integers(-8, 9), 0, n_slots - 1))
        j = int(slot_owner[t])
        if j == i:
            continue
        si = int(slots[i])
        before = cost_of(i, si) + (cost_of(j, t) if j >= 0 else 0.0)
        if j >= 0:
            slots[i], slots[j] = t, si
            after = cost_of(i, t) + cost_of(j, si)
        else:
            slots[i] = t
            after = cost_of(i, t)
        if after < before - 1e-9:
            slot_owner[t], slot_owner[si] = i, j
            accepted += 1
        else:  # undo
            slots[i] = si
            if j >= 0:
                slots[j] = t
    return slots, accepted


def place(graph: nir.NIRGraph, profile: Profile) -> nir.NIRGraph:
    """Assign every core a slot; record traffic before and after (see module doc)."""
    part = partition_of(graph)
    if part is None or part.profile != profile.name:
        raise ValueError("place needs the graph partitioned for this profile first")
    cores, chips = part.cores, part.chips
    xy = slot_coordinates(profile, chips)
    src, dst, w, owner = _routes(graph)
    seq_h, seq_c = _hops(xy, src, dst)
    order = _interleave(cores, src, dst)
    slots = np.empty(cores, np.int64)
    slots[order] = np.arange(cores)
    slots, accepted = _refine(slots, xy, src, dst, w, free=len(xy) - cores)
    hops, crossings = _hops(xy, slots[src], slots[dst])
    names = list(graph.nodes)
    per_node_h = np.bincount(owner, weights=w * hops, minlength=len(names))
    per_node_c = np.bincount(owner, weights=w * crossings, minlength=len(names))
    per_node_d = np.bincount(owner, weights=w, minlength=len(names))
    nodes = dict(graph.nodes)
    for k, name in enumerate(names):
        node = graph.nodes[name]
        p = _placed(node)
        if not p.on_chip or not p.cores:
            continue
        rate = float(node.metadata.get("spike_rate", 1.0)) if not p.synaptic else 1.0
        _, _, channels = _channel_blocks(node)
        per = 1.0 / (rate * channels) if channels and rate else 0.0
        own = slots[p.first_core : p.first_core + p.cores]
        nodes[name] = with_metadata(
            node,
            placement=dataclasses.replace(
                p,
                hops_per_spike=float(per_node_h[k] * per),
                chip_crossings_per_spike=float(per_node_c[k] * per),
                dest_cores_per_spike=float(per_node_d[k] * per),
                chips_spanned=int(
                    len(np.unique(own // int(profile.get("chip", "cores_per_chip"))))
                ),
            ),
        )
    traffic = Traffic(
        sequential=Hops(hops=float(w @ seq_h), chip_crossings=float(w @ seq_c)),
        placed=Hops(hops=float(w @ hops), chip_crossings=float(w @ crossings)),
        routes=int(len(src)),
        swaps_accepted=accepted,
        rate="recorded spike_rate per node where present, else 1 spike per channel per step",
    )
    gain = 1 - traffic.placed.hops / traffic.sequential.hops if traffic.sequential.hops else 0.0
    issues = [
        issue(
            "note",
            "-",
            "mesh",
            (
                f"placement: {traffic.placed.hops:.4g} hop-messages and "
                f"{traffic.placed.chip_crossings:.4g} chip crossings per timestep at the stated "
                f"rates over {len(src)} routes ({gain:.1%} fewer hops than sequential placement)"
            ),
        )
    ]
    summary = Placement(
        profile=profile.name,
        chips=chips,
        chip_grid=int(max(1, math.ceil(math.sqrt(chips)))),
        core_slots=slots,
        traffic=traffic,
    )
    return rebuild(graph, nodes, "place", issues, placement=summary)


__all__ = ["Hops", "Placement", "Traffic", "place", "placement_of", "slot_coordinates"]
