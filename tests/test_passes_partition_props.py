"""Invariants of every partition, on random graphs and random chips (hypothesis):
no core over any limit, every neuron and every synapse placed exactly once."""

import math

import nir
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stac.ir import make_graph
from stac.ir.nodes import RMSNorm, SignedIF
from stac.ir.passes import partition
from stac.ir.passes.partition import BLOCK_COLUMNS
from stac.ir.results import issues_of, node_placement, partition_of
from stac.profiles import PROFILE_DIR, Profile, load_profile_file

LOIHI2 = (PROFILE_DIR / "loihi2.toml").read_text()
COL = {k: i for i, k in enumerate(BLOCK_COLUMNS)}


def _profile(tmp_path, npc, mem, ax_in, ax_out, bits, graded) -> Profile:
    text = (
        LOIHI2.replace("neurons_per_core = { value = 8192", f"neurons_per_core = {{ value = {npc}")
        .replace(
            "synaptic_memory_bytes_per_core = { value = 131072",
            f"synaptic_memory_bytes_per_core = {{ value = {mem}",
        )
        .replace("axons_in_per_core = { value = 4096", f"axons_in_per_core = {{ value = {ax_in}")
        .replace("axons_out_per_core = { value = 4096", f"axons_out_per_core = {{ value = {ax_out}")
        .replace("weight_bits = { value = 8", f"weight_bits = {{ value = {bits}")
    )
    if not graded:
        text = (
            text.replace("graded = { value = true", "graded = { value = false")
            .replace("payload_bits = { value = 32", "payload_bits = { value = 1")
            .replace('SignedIF = { run = "chip", units = 1', 'SignedIF = { run = "chip", units = 2')
        )
    path = tmp_path / f"chip-{npc}-{mem}-{ax_in}-{ax_out}-{bits}-{graded}.toml"
    path.write_text(text)
    return load_profile_file(path)


@st.composite
def _chains(draw):
    """Input -> host norm -> (SignedIF -> Linear) x k -> Output, random widths."""
    widths = draw(st.lists(st.integers(1, 160), min_size=2, max_size=4))
    nodes = {
        "in": nir.Input(np.array([widths[0]])),
        "norm": RMSNorm(np.ones(widths[0], np.float32), 1e-5),
    }
    edges, prev = [("in", "norm")], "norm"
    for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
        nodes[f"enc{i}"] = SignedIF(np.ones(a, np.float32))
        nodes[f"fc{i}"] = nir.Linear(np.ones((b, a), np.float32))
        edges += [(prev, f"enc{i}"), (f"enc{i}", f"fc{i}")]
        prev = f"fc{i}"
    nodes["out"] = nir.Output(np.array([widths[-1]]))
    edges.append((prev, "out"))
    return make_graph(nodes, edges)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    graph=_chains(),
    npc=st.integers(1, 64),
    mem=st.integers(1, 512),
    ax_in=st.integers(2, 96),
    ax_out=st.integers(2, 256),
    bits=st.sampled_from([1, 2, 4, 8]),
    graded=st.booleans(),
)
def test_partition_invariants(tmp_path, graph, npc, mem, ax_in, ax_out, bits, graded):
    profile = _profile(tmp_path, npc, mem, ax_in, ax_out, bits, graded)
    after = partition(graph, profile)
    errors = {i.node for i in issues_of(after)["partition"] if i.level == "error"}
    next_core, total_cores = 0, 0
    for name in after.nodes:
        node = after.nodes[name]
        p = node_placement(node)
        if not p.on_chip:
            continue
        b = p.blocks
        total_cores += p.cores
        assert b.shape == (p.cores, len(BLOCK_COLUMNS))
        if name not in errors:  # a node the partition says fits must fit, core by core
            assert b[:, COL["neurons"]].max() <= npc, name
            assert b[:, COL["synapse_bytes"]].max() <= mem, name
            assert b[:, COL["axons_in"]].max() <= ax_in, name
            assert b[:, COL["axons_out"]].max() <= ax_out, name
        if isinstance(node, nir.Linear):
            out_f, in_f = node.weight.shape
            count = np.zeros((out_f, in_f), np.int64)
            for r0, r1, c0, c1 in b[b[:, COL["col0"]] >= 0][:, :4]:
                count[r0:r1, c0:c1] += 1
            assert np.all(count == 1), (
                f"{name}: a synapse is placed {count.min()}..{count.max()} times"
            )
            assert b[b[:, COL["col0"]] >= 0][:, COL["synapses"]].sum() == out_f * in_f
            assert math.ceil(p.synapse_bytes * 8 / bits) >= out_f * in_f
            acc = b[b[:, COL["col0"]] == -1]
            if p.col_blocks > 1:  # every neuron has exactly one accumulator
                rows = np.zeros(out_f, np.int64)
                for r0, r1 in acc[:, :2]:
                    rows[r0:r1] += 1
                assert np.all(rows == 1)
            else:
                assert len(acc) == 0
            if not graded and p.col_blocks > 1:
                assert name in errors  # no fan-in split without graded spikes
        else:  # neurons: every channel in exactly one core, units neurons each
            channels = int(np.prod(node.threshold.shape))
            seen = np.zeros(channels, np.int64)
            for r0, r1 in b[:, :2]:
                seen[r0:r1] += 1
            assert np.all(seen == 1)
            assert p.neurons == channels * profile.units(node)
    part = partition_of(after)
    assert part.cores == total_cores
    assert part.chips == math.ceil(total_cores / profile.get("chip", "cores_per_chip"))
    # cores have consecutive, unique ids
    firsts = sorted(
        (node_placement(n).first_core, node_placement(n).cores)
        for n in after.nodes.values()
        if node_placement(n).on_chip
    )
    for first, cores in firsts:
        assert first == next_core
        next_core += cores


@st.composite
def _conv_nets(draw):
    """Input -> relay IF -> Conv2d -> IF [-> SumPool2d -> IF] -> Flatten -> Linear -> Output,
    random channels, image sizes, kernels, strides and paddings."""
    c, h, w = draw(st.integers(1, 4)), draw(st.integers(3, 12)), draw(st.integers(3, 12))
    k, stride = draw(st.integers(1, 3)), (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    co = draw(st.integers(1, 6))
    ho, wo = (h + 2 * pad[0] - k) // stride[0] + 1, (w + 2 * pad[1] - k) // stride[1] + 1

    def neuron(shape):
        return nir.IF(r=np.ones(shape), v_threshold=np.ones(shape))

    nodes = {
        "in": nir.Input(np.array([c, h, w])),
        "relay": neuron((c, h, w)),
        "conv": nir.Conv2d(
            input_shape=np.array([h, w]),
            weight=np.ones((co, c, k, k)),
            stride=np.array(stride),
            padding=np.array(pad),
            dilation=np.array([1, 1]),
            groups=1,
            bias=np.zeros(co),
        ),
        "act": neuron((co, ho, wo)),
    }
    edges = [("in", "relay"), ("relay", "conv"), ("conv", "act")]
    prev, shape = "act", (co, ho, wo)
    if draw(st.booleans()) and ho >= 2 and wo >= 2:
        nodes["pool"] = nir.SumPool2d(
            kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
        )
        nodes["pool"].input_type = {"input": np.array(shape)}
        shape = (co, ho // 2, wo // 2)
        nodes["pool"].output_type = {"output": np.array(shape)}
        nodes["pact"] = neuron(shape)
        edges += [(prev, "pool"), ("pool", "pact")]
        prev = "pact"
    n = int(np.prod(shape))
    nodes["flat"] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
    nodes["fc"] = nir.Linear(np.ones((3, n), np.float32))
    nodes["out"] = nir.Output(np.array([3]))
    edges += [(prev, "flat"), ("flat", "fc"), ("fc", "out")]
    return make_graph(nodes, edges)


def _xyc_channels(shape, r0, r1):
    """NIR flat indices (c, y, x) of the outputs r0:r1 counted with x slowest, then y, then c."""
    c, h, w = shape
    return [(k % c * h + k // c % h) * w + k // (c * h) for k in range(r0, r1)]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    graph=_conv_nets(),
    npc=st.integers(1, 400),
    mem=st.integers(1, 256),
    ax_in=st.integers(2, 64),
    ax_out=st.integers(2, 400),
    bits=st.sampled_from([1, 4, 8]),
)
def test_conv_partition_invariants(tmp_path, graph, npc, mem, ax_in, ax_out, bits):
    """Spatial tiles: every output on exactly one core, limits kept, a tile's synaptic memory
    holds the kernels of the channels it has, and neurons fused into their layer's cores."""
    profile = _profile(tmp_path, npc, mem, ax_in, ax_out, bits, True)
    after = partition(graph, profile)
    errors = {i.node for i in issues_of(after)["partition"] if i.level == "error"}
    own_cores = 0
    for name, node in after.nodes.items():
        p = node_placement(node)
        if not p.on_chip or not p.cores:
            continue
        b = p.blocks
        if p.shares_cores_of is None:
            own_cores += p.cores
        else:  # same cores, same tiles as the layer it is fused into
            host = node_placement(after.nodes[p.shares_cores_of])
            assert (p.first_core, p.cores) == (host.first_core, host.cores)
            assert np.array_equal(b[:, :2], host.blocks[:, :2])
        if name not in errors and p.shares_cores_of not in errors:
            assert b[:, COL["neurons"]].max() <= npc, name
            assert b[:, COL["synapse_bytes"]].max() <= mem, name
            assert b[:, COL["axons_in"]].max() <= ax_in, name
            assert b[:, COL["axons_out"]].max() <= ax_out, name
        if isinstance(node, (nir.Conv2d, nir.SumPool2d)):
            shape = tuple(int(v) for v in node.output_type["output"])
            seen = np.zeros(int(np.prod(shape)), np.int64)
            for r0, r1 in b[:, :2]:
                seen[_xyc_channels(shape, r0, r1)] += 1
            assert np.all(seen == 1), name
            if isinstance(node, nir.Conv2d):
                per_channel = int(np.prod(node.weight.shape[1:]))
                assert p.synapses == seen.size * per_channel
                for r0, r1, nbytes in b[:, [COL["row0"], COL["row1"], COL["synapse_bytes"]]]:
                    channels = {ch // (shape[1] * shape[2]) for ch in _xyc_channels(shape, r0, r1)}
                    assert nbytes * 8 >= len(channels) * per_channel * bits
        elif isinstance(node, nir.IF) and name != "relay":
            assert p.neurons == int(np.prod(node.v_threshold.shape))
    assert partition_of(after).cores == own_cores
