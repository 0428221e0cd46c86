"""stac's Loihi 2 mapping of PilotNet SDNN beside the one Intel's compiler chose (61 cores).

    .venv/bin/python benchmarks/pilotnet_mapping.py [--input 66x200]

Intel's mapping is the per-core table that lava-dl's
``tutorials/lava/lib/dl/netx/pilotnet_sdnn/benchmark.ipynb`` prints when it runs the network
on a Loihi 2 chip (``net = netx.hdf5.Network(net_config='network.net', skip_layers=1)``; the
input layer is encoded off the neurocores and takes none of the 61 cores). Its layer table
(printed by the same notebook) gives the shapes built here (``CONVS``, ``DENSE``): five 3x3
convolutions and four dense layers, on a 3 x 66 x 200 input. The
sigma-delta neurons are modelled as IF neurons (the partition only needs their count); the
input goes through a relay IF layer so that the first convolution is event-driven, and those
relay cores are listed apart (Intel's encoder is not on the 61 cores).

stac's count for a layer is the cores of its synaptic node plus those of its neuron node when
they do not share cores (a convolution's neurons sit on its own tiles; a dense layer's neurons
take cores of their own in stac's model).
"""

from __future__ import annotations

import argparse
import time

import nir
import numpy as np

from stac.ir import make_graph
from stac.ir.passes import legality, partition
from stac.ir.passes.place import place
from stac.ir.results import node_placement, partition_of, placement_of
from stac.profiles import load_profile

#: Intel's per-layer cores (benchmark.ipynb, "Per core distribution" table) and its tiles
#: (x, y, c per core).
INTEL = [
    ("conv1", 25, "4x32x24"),
    ("conv2", 13, "4x15x36"),
    ("conv3", 3, "8x7x48"),
    ("conv4", 3, "8x4x64"),
    ("conv5", 2, "16x2x64"),
    ("dense1", 12, "8 neurons"),
    ("dense2", 1, "50 neurons"),
    ("dense3", 1, "10 neurons"),
    ("dense4", 1, "1 neuron"),
]
#: (channels, stride (y, x), padding (y, x)) of the 3x3 convolutions (benchmark.ipynb's layer
#: table lists stride and padding in (x, y) order: conv4 has stride 1, 2 and padding 0, 1).
CONVS = [
    (24, (2, 2), (0, 0)),
    (36, (2, 2), (0, 0)),
    (48, (2, 2), (0, 0)),
    (64, (2, 1), (1, 0)),
    (64, (1, 1), (0, 0)),
]
DENSE = [100, 50, 10, 1]


def _if(shape: tuple[int, ...]) -> nir.IF:
    return nir.IF(r=np.ones(shape), v_threshold=np.ones(shape))


def pilotnet(height: int, width: int) -> nir.NIRGraph:
    """PilotNet SDNN's layer shapes as a NIR graph (unit weights: only shapes matter here)."""
    nodes = {"input": nir.Input(np.array([3, height, width])), "relay": _if((3, height, width))}
    edges = [("input", "relay")]
    prev, c, h, w = "relay", 3, height, width
    for i, (out, stride, pad) in enumerate(CONVS, start=1):
        nodes[f"conv{i}"] = nir.Conv2d(
            input_shape=np.array([h, w]),
            weight=np.ones((out, c, 3, 3)),
            stride=np.array(stride),
            padding=np.array(pad),
            dilation=np.array([1, 1]),
            groups=1,
            bias=np.zeros(out),
        )
        c, h, w = out, (h + 2 * pad[0] - 3) // stride[0] + 1, (w + 2 * pad[1] - 3) // stride[1] + 1
        nodes[f"conv{i}_sd"] = _if((c, h, w))
        edges += [(prev, f"conv{i}"), (f"conv{i}", f"conv{i}_sd")]
        prev = f"conv{i}_sd"
    nodes["flatten"] = nir.Flatten(
        input_type={"input": np.array([c, h, w])}, start_dim=0, end_dim=-1
    )
    edges.append((prev, "flatten"))
    prev, n = "flatten", c * h * w
    for i, out in enumerate(DENSE, start=1):
        nodes[f"dense{i}"] = nir.Linear(weight=np.ones((out, n)))
        nodes[f"dense{i}_sd"] = _if((out,))
        edges += [(prev, f"dense{i}"), (f"dense{i}", f"dense{i}_sd")]
        prev, n = f"dense{i}_sd", out
    nodes["output"] = nir.Output(np.array([n]))
    edges.append((prev, "output"))
    return make_graph(nodes, edges)


def layer_cores(graph: nir.NIRGraph, layer: str) -> tuple[int, str]:
    """Cores of a layer (its synaptic node plus its neurons' own cores) and stac's tile."""
    syn, neu = node_placement(graph.nodes[layer]), node_placement(graph.nodes[f"{layer}_sd"])
    assert syn is not None and neu is not None and syn.blocks is not None
    cores = syn.cores + (0 if neu.shares_cores_of == layer else neu.cores)
    shape = np.asarray(graph.nodes[f"{layer}_sd"].v_threshold).shape
    rows = int((syn.blocks[:, 1] - syn.blocks[:, 0]).max())
    if len(shape) == 3:  # (x, y, c) tile of the largest core
        c, h, _ = shape
        tile = f"{rows // (h * c)}x{h}x{c}" if rows >= h * c else f"{rows} neuron(s)"
    else:
        tile = f"{rows} neuron(s)"
    return cores, tile


def table(graph: nir.NIRGraph) -> tuple[str, int, int]:
    lines = [
        "| layer | Intel cores | Intel tile (x*y*c) | stac cores | stac tile | stac / Intel |",
        "|---|---:|---|---:|---|---:|",
    ]
    total_i = total_s = 0
    for layer, intel, tile in INTEL:
        cores, stac_tile = layer_cores(graph, layer)
        total_i, total_s = total_i + intel, total_s + cores
        lines.append(
            f"| {layer} | {intel} | {tile} | {cores} | {stac_tile} | {cores / intel:.2f} |"
        )
    lines.append(f"| total | {total_i} | | {total_s} | | {total_s / total_i:.2f} |")
    return "\n".join(lines), total_i, total_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--input", default="66x200", help="input height x width (Intel's table is for 66x200)"
    )
    args = parser.parse_args()
    height, width = (int(v) for v in args.input.split("x"))
    profile = load_profile("loihi2")
    start = time.perf_counter()
    graph = partition(pilotnet(height, width), profile)
    t_part = time.perf_counter() - start
    start = time.perf_counter()
    graph = legality(place(graph, profile), profile)
    t_place = time.perf_counter() - start
    text, _, _ = table(graph)
    relay = node_placement(graph.nodes["relay"])
    part, placed = partition_of(graph), placement_of(graph)
    assert part is not None and placed is not None and relay is not None
    print(f"PilotNet SDNN, input 3x{height}x{width}, loihi2 profile\n")
    print(text)
    print(
        f"\ninput relay (not on Intel's 61 cores): {relay.cores} cores; all stac cores "
        f"{part.cores} on {part.chips} chip(s); partition {t_part:.2f} s, place + legality "
        f"{t_place:.2f} s, {placed.traffic.routes} routes"
    )


if __name__ == "__main__":
    from record import recording

    with recording("pilotnet_mapping"):
        main()
