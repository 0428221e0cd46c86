"""The place pass (slots, traffic, Before / Expected) and the legality pass (errors, warnings,
notes naming the layer and the limit; the whole pipeline on a converted model)."""

import dataclasses

import nir
import numpy as np
import pytest

from stac import StacError
from stac.frontend import ConversionConfig, convert, load_model
from stac.ir import make_graph
from stac.ir.nodes import RMSNorm, SignedIF
from stac.ir.passes import legality, legality_report, partition, place, quantise, run_passes
from stac.ir.passes.partition import BLOCK_COLUMNS
from stac.ir.passes.place import slot_coordinates
from stac.ir.results import legality_of, node_placement, partition_of, placement_of
from stac.profiles import PROFILE_DIR, load_profile, load_profile_file


def _star(fanout_rows: int, in_f: int = 8):
    """An encoder feeding a Linear whose rows are split over ``fanout_rows`` cores."""
    nodes = {
        "in": nir.Input(np.array([in_f])),
        "norm": RMSNorm(np.ones(in_f, np.float32), 1e-5),
        "enc": SignedIF(np.ones(in_f, np.float32)),
        "fc": nir.Linear(np.ones((fanout_rows, in_f), np.float32)),
        "out": nir.Output(np.array([fanout_rows])),
    }
    return make_graph(nodes, [("in", "norm"), ("norm", "enc"), ("enc", "fc"), ("fc", "out")])


def _one_row_per_core(tmp_path):
    """loihi2 with 8 bytes of synaptic memory per core: an 8-wide Linear gets one core per row."""
    path = tmp_path / "one-row.toml"
    path.write_text(
        (PROFILE_DIR / "loihi2.toml")
        .read_text()
        .replace(
            "synaptic_memory_bytes_per_core = { value = 131072",
            "synaptic_memory_bytes_per_core = { value = 8",
        )
    )
    return load_profile_file(path)


def test_slots_fill_tiles_along_a_boustrophedon_path():
    xy = slot_coordinates(load_profile("loihi1"), chips=2)
    assert xy.shape == (256, 4)
    assert xy[:4, :2].tolist() == [[0, 0]] * 4  # 4 cores share tile (0, 0)
    assert xy[28, :2].tolist() == [7, 0] and xy[32, :2].tolist() == [7, 1]  # turn at the edge
    assert xy[128].tolist() == [8, 0, 1, 0]  # chip 1 sits east of chip 0, its mesh joined on
    assert len({tuple(r) for r in xy[:, :2]}) == 64  # 2 chips x 32 tiles


def test_place_before_expected(tmp_path):
    """One encoder core feeding 15 row cores: sequential placement puts it at slot 0 (tile 0) with
    its consumers over tiles 0..3: 0x3 + 1x4 + 2x4 + 3x4 = 24 hops per channel; moving it into
    the middle of its consumers gives at most 16 (and swaps may find a 2-D arrangement)."""
    profile = _one_row_per_core(tmp_path)
    before = partition(quantise(_star(15), profile), profile)
    fc = node_placement(before.nodes["fc"])
    assert (node_placement(before.nodes["enc"]).cores, fc.cores) == (1, 15)
    after = place(before, profile)
    traffic = placement_of(after).traffic
    channels = 8
    assert traffic.sequential.hops == 24 * channels
    assert traffic.placed.hops <= 16 * channels
    slots = placement_of(after).core_slots
    assert len(set(slots.tolist())) == 16 and slots.max() < 128
    enc = node_placement(after.nodes["enc"])
    assert enc.dest_cores_per_spike == pytest.approx(15)
    assert enc.hops_per_spike == pytest.approx(traffic.placed.hops / channels)
    assert enc.chips_spanned == 1
    assert after.edges == before.edges and placement_of(before) is None
    assert not node_placement(before.nodes["enc"]).routed  # the input graph is left untouched


def test_placement_across_chips_counts_crossings(tmp_path):
    profile = _one_row_per_core(tmp_path)
    # 600 row cores; each encoder channel needs 600 output axons, so 6 channels per core: 2 cores
    g = place(partition(_star(600), profile), profile)
    part, traffic = partition_of(g), placement_of(g).traffic
    assert (part.cores, part.chips) == (602, 5)
    assert 0 < traffic.placed.chip_crossings <= traffic.sequential.chip_crossings
    assert traffic.placed.hops < traffic.sequential.hops


def test_legality_errors_name_the_layer_and_the_limit():
    g = partition(_star(100, in_f=5000), load_profile("loihi1"))  # 10000 axons > 4096
    with pytest.raises(
        StacError,
        match=r"does not fit loihi1: fc: fan-in 5000 x 2 axon\(s\).*"
        r"\[chip.axons_in_per_core\]",
    ):
        legality(g, load_profile("loihi1"))
    report = legality_report(g, load_profile("loihi1"))
    assert report.errors == 1 and report.issues[0].node == "fc"


def test_truenorth_neurons_cannot_fan_out_to_several_cores():
    tn = load_profile("truenorth")
    g = partition(_star(300, in_f=100), tn)  # 300 rows > 256 neurons per core: 2 row cores
    errors = [i for i in legality_report(g, tn).issues if i.level == "error"]
    assert [(i.node, i.limit) for i in errors] == [("enc", "chip.neuron_fanout_cores")]


def test_too_many_chips_is_an_error_naming_the_field(tmp_path):
    small = tmp_path / "tiny-chip.toml"
    small.write_text(
        (PROFILE_DIR / "loihi2.toml")
        .read_text()
        .replace("max_chips = { value = 1152", "max_chips = { value = 1")
        .replace("cores_per_chip = { value = 128", "cores_per_chip = { value = 2")
    )
    with pytest.raises(StacError, match=r"needs 2 tiny-chip|needs 2 loihi2 chips .* at most 1"):
        run_passes(_star(1000, in_f=300), load_profile_file(small))


def test_legality_rechecks_the_cores_itself():
    """A partition whose arithmetic is wrong is caught by the per-core re-check."""
    profile = load_profile("loihi2")
    g = partition(_star(10), profile)
    fc = g.nodes["fc"]
    bad = node_placement(fc).blocks.copy()
    bad[0, BLOCK_COLUMNS.index("neurons")] = 10**6
    fc.metadata = {**fc.metadata, "placement": dataclasses.replace(node_placement(fc), blocks=bad)}
    report = legality_report(g, profile)
    assert [(i.node, i.limit) for i in report.issues if i.level == "error"] == [
        ("fc", "chip.neurons_per_core")
    ]


def test_the_pipeline_on_a_converted_gpt2_fits_loihi2_and_not_truenorth(tiny_gpt2_dir):
    graph = convert(
        load_model(str(tiny_gpt2_dir)), ConversionConfig(timesteps=4, calibration_passages=1)
    )
    fitted = run_passes(graph, load_profile("loihi2"))
    report = legality_of(fitted)
    assert report.errors == 0 and report.profile == "loihi2"
    assert all(i.node and i.limit and i.message for i in report.issues)
    assert partition_of(fitted).cores >= 1
    assert [n for n in fitted.nodes if n not in graph.nodes] == []  # no node added or lost
    for _name, node in fitted.nodes.items():
        if isinstance(node, (nir.Linear, nir.Affine)) and node_placement(node).on_chip:
            assert node.metadata["quant"]["bits"] == 8
    # TrueNorth: 256 axons per core and binary spikes (two axons per signed channel), one
    # destination core per neuron: the MLP's down projection (fan-in 256) cannot be split, and
    # encoders feeding several cores have no relay neurons
    tn = load_profile("truenorth")
    with pytest.raises(StacError, match=r"the network does not fit truenorth: .* error\(s\)\)$"):
        run_passes(graph, tn)
    errors = {
        (i.node, i.limit)
        for i in legality_report(partition(quantise(graph, tn), tn), tn).issues
        if i.level == "error"
    }
    assert ("layer0_down", "chip.axons_in_per_core") in errors
    assert ("lm_head_in", "chip.neuron_fanout_cores") in errors


def _conv_net(c=2, h=9, w=11, co=5, k=3, stride=(2, 1), pad=(1, 0)):
    ho, wo = (h + 2 * pad[0] - k) // stride[0] + 1, (w + 2 * pad[1] - k) // stride[1] + 1
    nodes = {
        "in": nir.Input(np.array([c, h, w])),
        "relay": nir.IF(r=np.ones((c, h, w)), v_threshold=np.ones((c, h, w))),
        "conv": nir.Conv2d(
            input_shape=np.array([h, w]),
            weight=np.ones((co, c, k, k)),
            stride=np.array(stride),
            padding=np.array(pad),
            dilation=np.array([1, 1]),
            groups=1,
            bias=np.zeros(co),
        ),
        "act": nir.IF(r=np.ones((co, ho, wo)), v_threshold=np.ones((co, ho, wo))),
        "out": nir.Output(np.array([co, ho, wo])),
    }
    edges = [("in", "relay"), ("relay", "conv"), ("conv", "act"), ("act", "out")]
    return make_graph(nodes, edges), (c, h, w, co, ho, wo, k, stride, pad)


def test_conv_spikes_go_only_to_the_tiles_their_window_reaches(tmp_path):
    """Each input spike's destination cores, counted synapse by synapse (every output whose
    window holds the input, and the core holding that output), match the place pass's."""
    path = tmp_path / "small-cores.toml"
    path.write_text(
        (PROFILE_DIR / "loihi2.toml")
        .read_text()
        .replace("neurons_per_core = { value = 8192", "neurons_per_core = { value = 20")
    )
    profile = load_profile_file(path)
    graph, (c, h, w, co, ho, wo, k, stride, pad) = _conv_net()
    placed = place(partition(graph, profile), profile)
    conv, act = (node_placement(placed.nodes[n]) for n in ("conv", "act"))
    assert act.shares_cores_of == "conv" and act.first_core == conv.first_core
    assert conv.cores == -(-co * ho * wo // 20) and conv.cores > 4
    core_of = {}  # output (c, y, x) -> tile; tiles count outputs with x slowest, then y, c
    for t, (r0, r1) in enumerate(conv.blocks[:, :2]):
        for idx in range(r0, r1):
            core_of[(idx % co, idx // co % ho, idx // (co * ho))] = t
    dests = []
    for yi in range(h):
        for xi in range(w):
            reached = {
                core_of[(o, yo, xo)]
                for o in range(co)
                for yo in range(ho)
                for xo in range(wo)
                for ky in range(k)
                for kx in range(k)
                if yo * stride[0] - pad[0] + ky == yi and xo * stride[1] - pad[1] + kx == xi
            }
            dests += [len(reached)] * c
    relay = node_placement(placed.nodes["relay"])
    assert relay.dest_cores_per_spike == pytest.approx(np.mean(dests))
    assert np.mean(dests) < conv.cores / 2  # far from every tile
    # the layer's own neurons send nothing to its tiles (one route per output, to the host)
    assert conv.dest_cores_per_spike == 0.0
