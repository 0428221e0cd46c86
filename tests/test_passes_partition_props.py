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
    text = (LOIHI2.replace("neurons_per_core = { value = 8192", f"neurons_per_core = {{ value = {npc}")
            .replace("synaptic_memory_bytes_per_core = { value = 131072",
                     f"synaptic_memory_bytes_per_core = {{ value = {mem}")
            .replace("axons_in_per_core = { value = 4096", f"axons_in_per_core = {{ value = {ax_in}")
            .replace("axons_out_per_core = { value = 4096", f"axons_out_per_core = {{ value = {ax_out}")
            .replace("weight_bits = { value = 8", f"weight_bits = {{ value = {bits}"))
    if not graded:
        text = (text.replace("graded = { value = true", "graded = { value = false")
                .replace("payload_bits = { value = 32", "payload_bits = { value = 1")
                .replace('SignedIF = { run = "chip", units = 1', 'SignedIF = { run = "chip", units = 2'))
    path = tmp_path / f"chip-{npc}-{mem}-{ax_in}-{ax_out}-{bits}-{graded}.toml"
    path.write_text(text)
    return load_profile_file(path)


@st.composite
def _chains(draw):
    """Input -> host norm -> (SignedIF -> Linear) x k -> Output, random widths."""
    widths = draw(st.lists(st.integers(1, 160), min_size=2, max_size=4))
    nodes = {"in": nir.Input(np.array([widths[0]])),
             "norm": RMSNorm(np.ones(widths[0], np.float32), 1e-5)}
    edges, prev = [("in", "norm")], "norm"
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        nodes[f"enc{i}"] = SignedIF(np.ones(a, np.float32))
        nodes[f"fc{i}"] = nir.Linear(np.ones((b, a), np.float32))
        edges += [(prev, f"enc{i}"), (f"enc{i}", f"fc{i}")]
        prev = f"fc{i}"
    nodes["out"] = nir.Output(np.array([widths[-1]]))
    edges.append((prev, "out"))
    return make_graph(nodes, edges)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(graph=_chains(), npc=st.integers(1, 64), mem=st.integers(1, 512),
       ax_in=st.integers(2, 96), ax_out=st.integers(2, 256), bits=st.sampled_from([1, 2, 4, 8]),
       graded=st.booleans())
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
            assert np.all(count == 1), f"{name}: a synapse is placed {count.min()}..{count.max()} times"
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
    firsts = sorted((node_placement(n).first_core, node_placement(n).cores)
                    for n in after.nodes.values() if node_placement(n).on_chip)
    for first, cores in firsts:
        assert first == next_core
        next_core += cores
