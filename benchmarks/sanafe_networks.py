"""The networks of benchmarks/sanafe_validation.py, built once in stac and described for SANA-FE.

Every network here is integer-valued (weights, thresholds, inputs), so stac's simulator and
SANA-FE's Loihi LIF (``leak_decay = 1``, ``input_decay = 0``: an IF neuron, strict ``>``
threshold, hard reset to 0) fire exactly the same spikes: the comparison then isolates the
cost models. SANA-FE delays every synapse layer by one timestep, so each run ends with as many
input-free steps as the network has synapse layers, and stac runs the same number of steps.

- ``dense_chain``: Input -> relay IF -> Linear -> IF -> ... (integer weights).
- ``paper_cnn``: the NIR paper's CNN (``02_cnn/cnn_sinabs.nir``) with its weights rounded to
  8 bits per layer, thresholds in the same units, and its two SumPool2d layers folded into the
  synapses of the layer that follows (pool-then-conv is one strided convolution; pool-flatten-
  affine one affine map), since a Loihi 1 neuron cannot emit the pool's graded sum.
- ``random_network``: SANA-FE's random-network experiment (TCAD 2025, scripts/tcad2025/
  random_network.py in the sanafe package): per core ``n`` neurons; a share ``p`` of them,
  drawn at random, have bias 128 over threshold 64 and so fire every step, and each of these
  sends to ``m`` distinct random cores, ``s`` distinct random neurons in each, weight 128.
  Regenerated here from that description because the shipped generator fails on sanafe 2.2.9
  (it passes ``log_potential`` as a model attribute, which 2.2.9 rejects).

The relay IF in front of a feed-forward network turns the input spike trains into chip
spikes; SANA-FE models those neurons as its zero-cost ``input`` neurons (loihi.yaml's
``loihi_inputs``), so stac's relay neuron updates are dropped from the counts it prices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np

from stac.ir import make_graph
from stac.ir.graph import input_shape, output_shape, predecessors, successors
from stac.ir.passes.partition import BLOCK_COLUMNS
from stac.ir.passes.place import slot_coordinates
from stac.ir.passes.spatial import core_of_channel, is_spatial
from stac.ir.results import node_placement, partition_of, placement_of
from stac.profiles import Profile

RELAY = "relay"
_R0, _R1, _C0 = (BLOCK_COLUMNS.index(k) for k in ("row0", "row1", "col0"))


@dataclass
class Case:
    """A network and its input: ``x`` is ``[steps, *input shape]``, zeros in the drain."""

    name: str
    graph: nir.NIRGraph
    x: np.ndarray
    note: str
    depth: int  # synapse layers on the longest path (SANA-FE: timesteps of delay)
    sparse: dict[str, Any] = field(default_factory=dict)  # random networks only


def _if(shape: tuple[int, ...], threshold: float) -> nir.IF:
    return nir.IF(
        r=np.ones(shape), v_threshold=np.full(shape, float(threshold)), v_reset=np.zeros(shape)
    )


def _drained(spikes: np.ndarray, drain: int) -> np.ndarray:
    return np.concatenate([spikes, np.zeros((drain, *spikes.shape[1:]), spikes.dtype)])


def dense_chain(sizes: list[int], rate: float, steps: int, seed: int = 0) -> Case:
    """sizes[0] relayed input channels, then a Linear and an IF layer per further size."""
    rng = np.random.default_rng(seed)
    nodes: dict[str, Any] = {"input": nir.Input(np.array([sizes[0]])), RELAY: _if((sizes[0],), 0.5)}
    edges = [("input", RELAY)]
    prev = RELAY
    for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False), start=1):
        w = rng.integers(-3, 6, size=(n_out, n_in)).astype(np.float32)  # mean +1
        nodes[f"fc{k}"], nodes[f"h{k}"] = nir.Linear(weight=w), _if((n_out,), 2 * math.sqrt(n_in))
        edges += [(prev, f"fc{k}"), (f"fc{k}", f"h{k}")]
        prev = f"h{k}"
    nodes["output"] = nir.Output(np.array([sizes[-1]]))
    edges.append((prev, "output"))
    x = (rng.random((steps, sizes[0])) < rate).astype(np.float32)
    return Case(
        f"dense {'-'.join(map(str, sizes))}, input rate {rate:g}",
        make_graph(nodes, edges, {"dt": 1e-3}),
        _drained(x, len(sizes) - 1),
        "integer weights in [-3, 5], threshold 2 sqrt(fan-in)",
        len(sizes) - 1,
    )


def _int8(w: np.ndarray) -> tuple[np.ndarray, float]:
    scale = float(np.abs(w).max()) / 127
    return np.round(w / scale).astype(np.float32), scale


def paper_cnn(path: Path, rate: float, steps: int, seed: int = 0) -> Case:
    """The NIR paper CNN, 8-bit integer weights, pools folded (see the module doc)."""
    src = nir.read(str(path)).nodes
    c0, c2, c5, a9, a11 = (src[k] for k in ("0", "2", "5", "9", "11"))
    w5 = np.asarray(c5.weight)  # pool k2 s2, then conv k3 p1 = conv k6 s2 p2
    w5f = np.repeat(np.repeat(w5, 2, axis=2), 2, axis=3)
    w9 = np.asarray(a9.weight).reshape(-1, 8, 4, 4)  # pool k2 s2 on 8x8, flatten, affine
    w9f = np.repeat(np.repeat(w9, 2, axis=2), 2, axis=3).reshape(w9.shape[0], -1)
    nodes: dict[str, Any] = {
        "input": nir.Input(np.array([2, 34, 34])),
        RELAY: _if((2, 34, 34), 0.5),
    }
    edges = [("input", RELAY)]
    layers = [
        ("0", np.asarray(c0.weight), (34, 34), 2, 1, "1", (16, 16, 16)),
        ("2", np.asarray(c2.weight), (16, 16), 1, 1, "3", (16, 16, 16)),
        ("5", w5f, (16, 16), 2, 2, "6", (8, 8, 8)),
        ("9", w9f, None, 0, 0, "10", (256,)),
        ("11", np.asarray(a11.weight), None, 0, 0, "12", (10,)),
    ]
    prev = RELAY
    for name, w, hw, stride, pad, neuron, shape in layers:
        wi, scale = _int8(w)
        nodes[name] = (
            nir.Conv2d(
                input_shape=hw,
                weight=wi,
                stride=stride,
                padding=pad,
                dilation=1,
                groups=1,
                bias=np.zeros(wi.shape[0]),
            )
            if hw
            else nir.Affine(weight=wi, bias=np.zeros(wi.shape[0]))
        )
        nodes[neuron] = _if(shape, round(1.0 / scale))  # sinabs threshold 1, in weight units
        edges += [(prev, name), (name, neuron)]
        prev = neuron
    nodes["output"] = nir.Output(np.array([10]))
    edges.append((prev, "output"))
    rng = np.random.default_rng(seed)
    x = (rng.random((steps, 2, 34, 34)) < rate).astype(np.float32)
    return Case(
        f"NIR paper CNN, input rate {rate:g}",
        make_graph(nodes, edges, {"dt": 1e-3}),
        _drained(x, len(layers)),
        "8-bit weights, pools folded, biases are zero",
        len(layers),
    )


def random_network(
    cores: int, n: int, m: int, s: int, percent: int, steps: int, seed: int = 1
) -> Case:
    """SANA-FE's random network (module doc) as a recurrent stac graph with hand placement."""
    rng = np.random.default_rng(seed)
    total = cores * n
    firing = rng.random(total) < percent / 100
    src, dst = [], []
    for i in np.flatnonzero(firing):
        for c in rng.choice(cores, size=m, replace=False):
            src += [i] * s
            dst += list(c * n + rng.choice(n, size=s, replace=False))
    src_a, dst_a = np.asarray(src, np.int64), np.asarray(dst, np.int64)
    w = np.zeros((total, total), np.float32)
    w[dst_a, src_a] = 128.0
    nodes = {
        "input": nir.Input(np.array([total])),
        "pop": _if((total,), 64.0),
        "syn": nir.Linear(weight=w),
    }
    graph = make_graph(nodes, [("input", "pop"), ("pop", "syn"), ("syn", "pop")], {"dt": 1e-3})
    bias = np.where(firing, 128.0, 0.0).astype(np.float32)
    return Case(
        f"random c{cores} n{n} m{m} s{s} p{percent}",
        graph,
        np.broadcast_to(bias, (steps, total)).copy(),
        "SANA-FE random-network recipe, bias 128, threshold 64, weight 128",
        1,
        {"cores": cores, "n": n, "src": src_a, "dst": dst_a, "bias": bias},
    )


def tile_of(core: int, height: int, cores_per_tile: int) -> tuple[int, int]:
    """SANA-FE's tile coordinates of a core index (tiles numbered column by column)."""
    tile = core // cores_per_tile
    return tile // height, tile % height


def sanafe_core(slot: int, xy: np.ndarray, height: int, profile: Profile) -> int:
    """SANA-FE core index of a stac core slot on the same mesh position."""
    cpt = int(profile.get("mesh", "cores_per_tile"))
    per_chip = int(profile.get("chip", "cores_per_chip"))
    x, y = int(xy[slot, 0]), int(xy[slot, 1])
    return (x * height + y) * cpt + (slot % per_chip) % cpt


def _pairs(node: Any) -> tuple[np.ndarray, np.ndarray]:
    """(source, destination) channel pairs of a synaptic node, and their weights."""
    w = np.asarray(node.weight)
    if isinstance(node, (nir.Linear, nir.Affine)):
        d, s = np.indices(w.shape)
        return np.stack([s.ravel(), d.ravel()], 1), w.ravel()
    c_in, h, wd = input_shape(node)
    o, oh, ow = output_shape(node)
    stride, pad = int(np.ravel(node.stride)[0]), int(np.ravel(node.padding)[0])
    pairs, weights = [], []
    oo, cc, yy, xx = np.meshgrid(
        np.arange(o), np.arange(c_in), np.arange(oh), np.arange(ow), indexing="ij"
    )
    for ky in range(w.shape[2]):
        for kx in range(w.shape[3]):
            iy, ix = yy * stride - pad + ky, xx * stride - pad + kx
            ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < wd)
            pairs.append(np.stack([(cc * h + iy) * wd + ix, (oo * oh + yy) * ow + xx], -1)[ok])
            weights.append(w[oo[ok], cc[ok], ky, kx])
    return np.concatenate(pairs), np.concatenate(weights)


def feedforward_spec(
    graph: nir.NIRGraph, profile: Profile, case: Case
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """SANA-FE description of a placed feed-forward case: each IF layer's neurons on the
    cores that stac's partition gave the synaptic node feeding it (those cores hold its
    synapses and compartments), the relay's on its own cores, at the same mesh positions."""
    part, placement = partition_of(graph), placement_of(graph)
    assert part is not None and placement is not None, "run the partition and place passes first"
    slots = placement.core_slots
    chips = int(part.chips)
    gx = max(1, math.ceil(math.sqrt(chips)))
    mesh = (
        gx * int(profile.get("mesh", "tiles_x")),
        math.ceil(chips / gx) * int(profile.get("mesh", "tiles_y")),
    )
    xy = slot_coordinates(profile, chips)
    pre, post = predecessors(graph), successors(graph)
    groups, edges, arrays = [], [], {}
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.IF):
            continue
        feed = [p for p in pre[name] if not isinstance(graph.nodes[p], nir.Input)]
        owner = graph.nodes[feed[0]] if feed else node
        p = node_placement(owner)
        assert p is not None and p.blocks is not None, f"{name} has no cores"
        blocks = p.blocks[p.blocks[:, _C0] >= 0] if p.synaptic else p.blocks
        per_core = np.array(
            [
                sanafe_core(int(slots[p.first_core + k]), xy, mesh[1], profile)
                for k in range(len(blocks))
            ]
        )
        cores = per_core[
            core_of_channel(
                blocks[:, [_R0, _R1]],
                int(np.prod(output_shape(node))),
                output_shape(owner) if is_spatial(owner) else None,
            )
        ]
        arrays[f"{name}.cores"] = cores
        if name == RELAY:
            groups.append({"name": name, "size": len(cores), "kind": "input"})
            arrays[f"{name}.spikes"] = case.x.reshape(len(case.x), -1) > 0
        else:
            groups.append(
                {
                    "name": name,
                    "size": len(cores),
                    "kind": "lif",
                    "threshold": float(np.ravel(node.v_threshold)[0]),
                }
            )
        for syn in post[name]:
            if syn in graph.nodes and hasattr(graph.nodes[syn], "weight"):
                dst = next(d for d in post[syn])
                pairs, weights = _pairs(graph.nodes[syn])
                arrays[f"{syn}.pairs"], arrays[f"{syn}.weights"] = pairs, weights
                edges.append({"src": name, "dst": dst, "key": syn})
    return {"mesh": mesh, "steps": len(case.x), "groups": groups, "edges": edges}, arrays


def random_spec(case: Case) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """SANA-FE description of a random network: neuron i on core i // n, as the experiment."""
    sp = case.sparse
    total = sp["cores"] * sp["n"]
    arrays = {
        "pop.cores": np.arange(total) // sp["n"],
        "pop.bias": sp["bias"],
        "syn.pairs": np.stack([sp["src"], sp["dst"]], 1),
        "syn.weights": np.full(len(sp["src"]), 128.0),
    }
    groups = [
        {"name": "pop", "size": total, "kind": "lif", "threshold": 64.0, "force_update": True}
    ]
    return (
        {
            "mesh": (8, 4),
            "steps": len(case.x),
            "groups": groups,
            "edges": [{"src": "pop", "dst": "pop", "key": "syn"}],
        },
        arrays,
    )
