"""The cost model on hand-computed cases, the dense roofline, and ``stac report`` end to end."""

import dataclasses
import json

import nir
import numpy as np
import pytest

from stac.cli import main
from stac.errors import StacError
from stac.ir import make_graph
from stac.ir.nodes import RMSNorm, SignedIF
from stac.ir.passes import run_passes
from stac.ir.passes.common import with_metadata
from stac.ir.results import NodePlacement, node_placement
from stac.profiles import load_profile
from stac.commands.report import report_artifact
from stac.sim.dense import dense_estimate
from stac.reporting.schema import TARGETS_REPORT, TARGETS_REPORT_VERSION
from stac.sim.cost import mean_hops, node_costs, summarise
from stac.sim.semantics import NodeStats

PNG = b"\x89PNG\r\n\x1a\n"


def _with(profile, **sections):
    """``profile`` with some numbers replaced (round figures for hand calculations)."""
    values = {k: dict(v) for k, v in profile.values.items()}
    for section, entries in sections.items():
        values[section].update(entries)
    return dataclasses.replace(profile, values=values)


@pytest.fixture(scope="module")
def round_chip():
    return _with(
        load_profile("loihi2"),
        energy_pj={
            "synop": 1.0,
            "neuron_update": 2.0,
            "spike_out": 4.0,
            "spike": 0.0,
            "message_in": 0.0,
        },
        latency_ns={
            "synop": 1.0,
            "neuron_update": 2.0,
            "spike_out": 4.0,
            "barrier": 100.0,
            "spike": 0.0,
            "message_in": 0.0,
            "barrier_by_tiles": {},
        },
        host_link={
            "bandwidth_gb_s": 1.0,
            "latency_us": 1.0,
            "energy_pj_per_byte": 1.0,
            "bytes_per_value": 4,
        },
        mesh={
            "tiles_x": 2,
            "tiles_y": 2,
            "cores_per_tile": 32,
            "hop_energy_pj": 8.0,
            "hop_latency_ns": 1.0,
        },
        chip={"static_power_w": 1.0},
    )


def _encoder_graph(placement=None):
    """input -> norm (host) -> SignedIF (3) -> Linear 3->2 -> output, optionally placed."""
    nodes = {
        "input": nir.Input(np.array([3])),
        "norm": RMSNorm(weight=np.ones(3, np.float32), eps=1e-6),
        "enc": SignedIF(threshold=np.ones(3, np.float32)),
        "lin": nir.Linear(weight=np.ones((2, 3), np.float32)),
        "output": nir.Output(np.array([2])),
    }
    for name, place in (placement or {}).items():
        nodes[name] = with_metadata(nodes[name], placement=NodePlacement(**place))
    edges = [("input", "norm"), ("norm", "enc"), ("enc", "lin"), ("lin", "output")]
    return make_graph(nodes, edges, {})


STATS = {  # one token, T = 4
    "input": NodeStats(),
    "output": NodeStats(),
    "norm": NodeStats(host_flops=12),
    "enc": NodeStats(spikes=5, neuron_updates=12),
    "lin": NodeStats(synops=10, neuron_updates=8),
}
HOST = {"unit": "host"}


def _placed(enc_route=None, lin_extra=None):
    """The encoder on 1 core, the linear map on 2 (hand placement, as the passes record it)."""
    enc = {"unit": "chip", "cores": 1, "neurons": 3, "synapse_bytes": 0, **(enc_route or {})}
    lin = {
        "unit": "chip",
        "cores": 2,
        "neurons": 2,
        "synapse_bytes": 6,
        "col_blocks": 1,
        "dest_cores_per_spike": 0.0,
        "hops_per_spike": 0.0,
        **(lin_extra or {}),
    }
    return _encoder_graph({"input": HOST, "norm": HOST, "output": HOST, "enc": enc, "lin": lin})


ROUTED = {"dest_cores_per_spike": 2.0, "hops_per_spike": 3.0, "chip_crossings_per_spike": 0.0}


def test_stage_cost_by_hand(round_chip):
    host = load_profile(round_chip.host)
    rows = {
        r.node: r for r in node_costs(_placed(ROUTED), STATS, round_chip, host, steps=4, tokens=1)
    }
    enc, lin, norm = rows["enc"], rows["lin"], rows["norm"]
    # encoder: 5 spikes x 2 destination cores = 10 messages, 5 x 3 = 15 hops;
    # 12 updates x 2 pJ + 10 messages x 4 pJ + 15 hops x 8 pJ = 184 pJ
    assert (enc.messages, enc.hops) == (10, 15)
    assert enc.chip_energy_j == pytest.approx(184e-12)
    # linear map: 10 synops x 1 pJ + 8 updates x 2 pJ = 26 pJ
    assert lin.chip_energy_j == pytest.approx(26e-12)
    # per core and step: encoder (12 x 2 + 10 x 4) / (1 core x 4 steps) = 16 ns, linear
    # (10 + 16) / (2 x 4) = 3.25 ns; step = 16 + mean route 1.5 hops x 1 ns + 100 ns barrier;
    # T + depth 1 = 5 steps
    stage_s = 5 * 117.5e-9
    # host link: norm -> enc carries 3 values x 4 bytes (1 us + 12 ns), lin -> output 2 x 4
    # bytes (1 us + 8 ns), charged to the receiver; 20 bytes x 1 pJ
    assert (enc.link_bytes, rows["output"].link_bytes) == (12, 8)
    assert enc.link_latency_s == pytest.approx(1.012e-6)
    assert rows["output"].latency_s == pytest.approx(1.008e-6)
    assert enc.latency_s + lin.latency_s == pytest.approx(stage_s + 1.012e-6)
    assert enc.busy_fraction == pytest.approx(16e-9 * 4 / stage_s)
    h = host.values["host"]
    assert norm.host_energy_j == pytest.approx(12 * h["flop_energy_pj"] * 1e-12)
    assert norm.latency_s == pytest.approx(12 / (h["throughput_gflops"] * 1e9))

    summary = summarise(list(rows.values()), round_chip, chips=1, cores=3)
    total = summary["total"]
    assert total["chip_dynamic_energy_j"] == pytest.approx(210e-12)
    assert total["latency_s"] == pytest.approx(stage_s + norm.latency_s + 2.02e-6)
    assert total["link_energy_j"] == pytest.approx(20e-12)
    assert total["chip_static_energy_j"] == pytest.approx(1.0 * total["latency_s"])
    assert total["energy_j"] == pytest.approx(
        total["chip_dynamic_energy_j"]
        + total["chip_static_energy_j"]
        + total["host_energy_j"]
        + 20e-12
    )
    assert total["spike_rate"] == pytest.approx(5 / 12)
    assert summary["notes"] == []


def test_graded_spikes_are_priced_as_messages_and_said(round_chip):
    graded = {**STATS, "enc": NodeStats(spikes=5, spike_bits=15, neuron_updates=12)}
    host = load_profile("host-cpu")
    rows = node_costs(_placed(ROUTED), graded, round_chip, host, 4, 1)
    binary = node_costs(_placed(ROUTED), STATS, round_chip, host, 4, 1)
    assert [r.chip_energy_j for r in rows] == [r.chip_energy_j for r in binary]
    summary = summarise(rows, round_chip, 1, 3)
    assert summary["total"]["spike_bits"] == 15
    assert any(
        "3.00 bits per spike on average, priced as one message" in n for n in summary["notes"]
    )


def test_soma_spike_and_message_receive_by_hand(round_chip):
    chip = _with(
        round_chip,
        energy_pj={"spike": 10.0, "message_in": 1.0},
        latency_ns={"spike": 2.0, "message_in": 3.0},
    )
    rows = {
        r.node: r
        for r in node_costs(
            _placed(ROUTED), STATS, chip, load_profile("host-cpu"), steps=4, tokens=1
        )
    }
    enc, lin = rows["enc"], rows["lin"]
    # encoder: 184 pJ as above + 5 fired neurons x 10 pJ; the linear map receives its 10
    # messages: 26 pJ + 10 x 1 pJ
    assert enc.spike_energy_j == pytest.approx(50e-12)
    assert enc.chip_energy_j == pytest.approx(234e-12)
    assert lin.messages_in == 10 and enc.messages_in == 0
    assert lin.chip_energy_j == pytest.approx(36e-12)
    # per core and step: encoder (24 + 40 + 5 x 2) / 4 = 18.5 ns; linear (10 + 16 + 10 x 3)
    # / (2 x 4) = 7 ns; step 18.5 + 1.5 + 100 ns, 5 steps
    assert enc.core_step_s == pytest.approx(18.5e-9) and lin.core_step_s == pytest.approx(7e-9)
    chip_s = enc.latency_s + lin.latency_s - enc.link_latency_s
    assert chip_s == pytest.approx(5 * 120e-9)


@pytest.mark.parametrize(
    "cores_per_tile, lin_first_core, barrier_ns",
    [
        (32, 0, 100.0),  # 2 cores used, 1 tile: below every table entry, the barrier field
        (1, 0, 500.0),  # 2 tiles: the entry for 2
        (1, 1, 500.0),  # 3 tiles: the largest entry not above 3 is 2's
        (1, 3, 900.0),  # 5 tiles: 4's
    ],
)
def test_barrier_follows_the_mapped_tiles(round_chip, cores_per_tile, lin_first_core, barrier_ns):
    chip = _with(
        round_chip,
        latency_ns={"barrier_by_tiles": {2: 500.0, 4: 900.0}},
        mesh={"cores_per_tile": cores_per_tile},
    )
    graph = _placed(ROUTED, {"first_core": lin_first_core})
    rows = {r.node: r for r in node_costs(graph, STATS, chip, load_profile("host-cpu"), 4, 1)}
    chip_s = rows["enc"].latency_s + rows["lin"].latency_s - rows["enc"].link_latency_s
    assert chip_s == pytest.approx(5 * (16e-9 + 1.5e-9 + barrier_ns * 1e-9))


def test_graded_spikes_upper_bound_prices_each_bit_as_a_message(round_chip):
    graded = {**STATS, "enc": NodeStats(spikes=5, spike_bits=15, neuron_updates=12)}
    rows = node_costs(_placed(ROUTED), graded, round_chip, load_profile("host-cpu"), 4, 1)
    total = summarise(rows, round_chip, 1, 3)["total"]
    # 3 bits per spike: 2 more messages per message; energy 2 x (10 x 4 + 15 x 8) pJ; the
    # encoder's core step 16 + 2 x 10 x 4 / 4 = 36 ns, so the stage 5 x 20 ns longer
    assert total["graded_upper_latency_s"] == pytest.approx(total["latency_s"] + 100e-9)
    assert total["graded_upper_energy_j"] == pytest.approx(
        total["energy_j"] + 320e-12 + 1.0 * 100e-9
    )  # static 1 W x the longer token
    binary = summarise(
        node_costs(_placed(ROUTED), STATS, round_chip, load_profile("host-cpu"), 4, 1),
        round_chip,
        1,
        3,
    )["total"]
    assert (binary["graded_upper_energy_j"], binary["graded_upper_latency_s"]) == (
        pytest.approx(binary["energy_j"]),
        pytest.approx(binary["latency_s"]),
    )


@pytest.mark.parametrize(
    "link, bottleneck, stage_s",
    [
        ({}, "host link", 2.02e-6),  # two transfers of 1 us + 12 / 8 ns each
        ({"latency_us": 0.0, "bandwidth_gb_s": 1000.0}, "chip stage 0", 5 * 117.5e-9),
    ],
)
def test_pipeline_throughput_is_one_item_per_slowest_resource(
    round_chip, link, bottleneck, stage_s
):
    chip = _with(round_chip, host_link=link)
    rows = node_costs(_placed(ROUTED), STATS, chip, load_profile("host-cpu"), 4, 1)
    total = summarise(rows, chip, 1, 3)["total"]
    assert total["pipeline_bottleneck"] == bottleneck
    assert total["pipeline_stage_s"] == pytest.approx(stage_s)
    assert total["pipeline_items_per_s"] == pytest.approx(1 / stage_s)
    assert total["tokens_per_s"] == pytest.approx(1 / total["latency_s"])  # one item alone


def test_partial_sums_of_split_layers_travel_every_step(round_chip):
    split = {"col_blocks": 2, "dest_cores_per_spike": 0.5, "hops_per_spike": 1.0}
    rows = {
        r.node: r
        for r in node_costs(
            _placed(ROUTED, split), STATS, round_chip, load_profile("host-cpu"), steps=4, tokens=1
        )
    }
    # 2 output channels x 4 steps = 8 channel-steps, each 0.5 accumulator messages and 1 hop
    # (the place pass sums hops over a spike's destination cores)
    assert (rows["lin"].messages, rows["lin"].hops) == (4, 8)


def test_without_routes_every_consumer_core_is_a_destination_and_it_is_said(round_chip):
    rows = node_costs(_placed(), STATS, round_chip, load_profile("host-cpu"), 4, 1)
    enc = next(r for r in rows if r.node == "enc")
    assert mean_hops((2, 2)) == pytest.approx(1.0)  # (4 - 1) / 6 per axis
    assert (enc.messages, enc.hops) == (10, pytest.approx(10.0))  # 2 cores, 1 hop each
    notes = summarise(rows, round_chip, 1, 3)["notes"]
    assert len(notes) == 1 and "no routes in the placement" in notes[0]


def test_the_passes_placement_feeds_the_traffic():
    loihi2 = load_profile("loihi2")
    graph = run_passes(_encoder_graph(), loihi2)
    place = node_placement(graph.nodes["enc"])
    rows = node_costs(graph, STATS, loihi2, load_profile("host-cpu"), 4, 1)
    enc = next(r for r in rows if r.node == "enc")
    assert enc.messages == pytest.approx(5 * place.dest_cores_per_spike) and enc.messages > 0
    assert enc.hops == pytest.approx(5 * place.hops_per_spike)


def test_two_neurons_per_signed_channel_double_the_updates_not_the_spike_rate():
    loihi1 = load_profile("loihi1")
    assert loihi1.ops["SignedIF"].units == 2
    graph = run_passes(_encoder_graph(), loihi1)
    rows = node_costs(graph, STATS, loihi1, load_profile(loihi1.host), steps=4, tokens=1)
    enc = next(r for r in rows if r.node == "enc")
    assert enc.chip_neuron_updates == 2 * enc.neuron_updates == 24
    assert enc.update_energy_j == pytest.approx(
        24 * loihi1.get("energy_pj", "neuron_update") * 1e-12
    )
    assert summarise(rows, loihi1, 1, 2)["total"]["spike_rate"] == pytest.approx(5 / 12)


def test_spike_driven_work_left_on_the_host_is_priced_there_and_said():
    loihi2 = load_profile("loihi2")
    no_affine = dataclasses.replace(  # a chip whose [ops] table lacks Affine
        loihi2, name="no-affine", ops={k: v for k, v in loihi2.ops.items() if k != "Affine"}
    )
    nodes = dict(_encoder_graph().nodes)
    nodes["lin"] = nir.Affine(weight=np.ones((2, 3), np.float32), bias=np.zeros(2, np.float32))
    graph = run_passes(make_graph(nodes, _encoder_graph().edges, {}), no_affine)
    assert not node_placement(graph.nodes["lin"]).on_chip
    rows = {r.node: r for r in node_costs(graph, STATS, no_affine, load_profile("host-cpu"), 4, 1)}
    assert rows["lin"].chip_energy_j == 0 and rows["lin"].host_flops == 10
    assert rows["enc"].messages == 5  # every spike leaves the chip for the host
    assert "lin (Affine) runs on the host on no-affine" in rows["lin"].notes[0]


def test_a_spiking_neuron_left_on_the_host_costs_the_host_profiles_flops_per_update():
    loihi2 = load_profile("loihi2")
    no_if = dataclasses.replace(  # a chip whose [ops] table lacks SignedIF
        loihi2, name="no-if", ops={k: v for k, v in loihi2.ops.items() if k != "SignedIF"}
    )
    host = _with(load_profile("host-cpu"), host={"flops_per_neuron_update": 7})
    graph = run_passes(_encoder_graph(), no_if)
    assert not node_placement(graph.nodes["enc"]).on_chip
    rows = {r.node: r for r in node_costs(graph, STATS, no_if, host, 4, 1)}
    assert rows["enc"].host_flops == 7 * 12  # 12 updates, no synops
    assert "neuron updates as 7 flops each" in rows["enc"].notes[0]


def test_missing_profile_field_names_field_and_profile():
    loihi2 = load_profile("loihi2")
    broken = dataclasses.replace(loihi2, values={**loihi2.values, "mesh": {}})
    with pytest.raises(StacError, match=r"loihi2 .*has no field 'mesh.hop_energy_pj'"):
        node_costs(
            run_passes(_encoder_graph(), loihi2), STATS, broken, load_profile("host-cpu"), 4, 1
        )


def test_dense_roofline_by_hand():
    graph = _encoder_graph()  # one 2x3 linear map: 6 MACs, 6 weights
    h100 = load_profile("h100")
    est = dense_estimate(graph, h100, context=1)
    d = h100.values["dense"]
    moved = 6 * 2  # bf16
    assert (est["macs"], est["flops"], est["bytes"]) == (6, 12, moved)
    assert est["bound"] == "memory"
    assert est["latency_s"] == pytest.approx(moved / (d["memory_bandwidth_gb_s"] * 1e9))
    assert est["energy_j"] == pytest.approx(d["power_w"] * est["latency_s"])
    with pytest.raises(StacError, match="field 'precision' is 'fp4'"):
        dense_estimate(graph, dataclasses.replace(h100, precision="fp4"), context=1)


def test_dense_calibrated_baseline_by_hand():
    """The calibrated figure is the profile's measurement scaled by the weights read per token;
    the roofline stays beside it."""
    graph = _encoder_graph()  # 6 weights
    jetson = load_profile("jetson-orin-nano")
    cal = jetson.values["calibrated"]
    assert (cal["energy_mj_per_token"], cal["tokens_per_s"]) == (44.2, 165.2)
    same = _with(jetson, calibrated={"model_params_m": 6e-6})  # a model of the measured size
    est = dense_estimate(graph, same, context=1)
    assert est["basis"] == "calibrated"
    assert est["energy_j"] == pytest.approx(44.2e-3)
    assert est["tokens_per_s"] == pytest.approx(165.2)
    assert est["latency_s"] == pytest.approx(1 / 165.2)
    d = jetson.values["dense"]
    roof = 6 * 2 / (d["memory_bandwidth_gb_s"] * 1e9)  # fp16, memory bound
    assert est["roofline_latency_s"] == pytest.approx(roof)
    assert est["roofline_energy_j"] == pytest.approx(d["power_w"] * roof)
    half = dense_estimate(graph, _with(jetson, calibrated={"model_params_m": 12e-6}), context=1)
    assert half["energy_j"] == pytest.approx(22.1e-3)  # half the weights: half the bytes read
    assert half["tokens_per_s"] == pytest.approx(2 * 165.2)
    h100 = dense_estimate(graph, load_profile("h100"), context=1)
    assert h100["basis"] == "roofline" and h100["energy_j"] == h100["roofline_energy_j"]


def test_batch_figures_by_hand():
    """B conversations in flight: tokens/s = min(B / latency, 1 / slowest resource), the static
    power shared by those tokens, the rest of a token's energy unchanged."""
    from stac.sim.pricing import BATCHES, batch_figures, batch_sweep

    total = {
        "latency_s": 10e-3,
        "pipeline_stage_s": 1e-3,
        "energy_j": 40e-3,
        "chip_static_energy_j": 30e-3,  # 3 W x 10 ms
    }
    one = batch_figures(total, 3.0, 1)
    assert one["tokens_per_s"] == pytest.approx(100.0)
    assert one["energy_j"] == pytest.approx(40e-3) and one["latency_s"] == pytest.approx(10e-3)
    four = batch_figures(total, 3.0, 4)
    assert four["tokens_per_s"] == pytest.approx(400.0)
    assert four["chip_static_energy_j"] == pytest.approx(7.5e-3)
    assert four["energy_j"] == pytest.approx(17.5e-3) and four["bound"] == "latency"
    big = batch_figures(total, 3.0, 16)  # past the pipeline's depth: 1 token per ms
    assert big["tokens_per_s"] == pytest.approx(1000.0) and big["bound"] == "pipeline"
    assert big["energy_j"] == pytest.approx(13e-3)
    assert big["latency_s"] == pytest.approx(16e-3)  # each conversation waits its turn
    assert (
        [b["batch"] for b in batch_sweep(total, 3.0)] == list(BATCHES) == [1, 2, 4, 8, 16, 32, 64]
    )
    with pytest.raises(StacError, match="batch must be a positive integer"):
        batch_figures(total, 3.0, 0)


# --- stac report, end to end --------------------------------------------------------------------


@pytest.fixture(scope="module")
def multi_report(tiny_gpt2_artifact, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "r"
    report = report_artifact(tiny_gpt2_artifact, ["loihi2", "loihi1", "spinnaker2", "h100"], out)
    return out, report


def test_report_writes_json_markdown_and_plots(multi_report):
    out, report = multi_report
    assert {p.name for p in out.iterdir()} == {
        "report.json",
        "report.md",
        "energy_breakdown.png",
        "spike_rate.png",
        "core_utilisation.png",
        ".stac-output",  # the marker of every directory stac writes (stac.files.MARKER)
    }
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000
    data = json.loads((out / "report.json").read_text())
    assert data["schema_version"] == TARGETS_REPORT_VERSION and data["schema"] == TARGETS_REPORT
    assert TARGETS_REPORT == "stac-report-targets"  # the name docs/cost_model.md gives
    assert [t["target"] for t in data["targets"]] == ["loihi2", "loihi1", "spinnaker2", "h100"]
    md = (out / "report.md").read_text()
    assert "| target | runs | energy mJ |" in md and "## loihi1: per layer" in md
    assert "stac-stage-sync-v3" in md and "dense-roofline-v1" in md
    assert "| host link mJ |" in md and "| items/s pipelined |" in md
    for line in ("- host link: ", "- graded spikes, upper bound", "- pipelined stream of"):
        assert md.count(line) == 3  # one per neuromorphic target


def test_compile_report_shows_the_pricing_rows(tiny_gpt2_artifact):
    md = (tiny_gpt2_artifact / "report.md").read_text()
    total = json.loads((tiny_gpt2_artifact / "report.json").read_text())["total"]
    assert "bytes per token across the chip-host boundary" in md and "items/s (slowest: " in md
    assert total["graded_upper_energy_j"] >= total["energy_j"] > total["link_energy_j"] > 0


def test_report_rows_are_consistent(multi_report):
    _, report = multi_report
    chips = [t for t in report["targets"] if t["kind"] == "neuromorphic"]
    assert len(chips) == 3 and not any("error" in t for t in chips)
    for t in chips:
        total = t["total"]
        assert total["energy_j"] == pytest.approx(
            total["chip_dynamic_energy_j"]
            + total["chip_static_energy_j"]
            + total["host_energy_j"]
            + total["link_energy_j"]
        )
        assert total["link_bytes"] > 0 and total["link_latency_s"] > 0
        assert 0 < total["pipeline_stage_s"] <= total["latency_s"]
        assert total["pipeline_items_per_s"] >= total["tokens_per_s"]
        assert total["tokens_per_s"] == pytest.approx(1 / total["latency_s"])
        for key in ("synops", "spikes", "latency_s", "chip_energy_j"):
            layers = sum(layer[key] for layer in t["layers"].values())
            assert layers == pytest.approx(
                total[key if key != "chip_energy_j" else "chip_dynamic_energy_j"]
            )
        assert set(t["layers"]) == {"embed", "layer0", "layer1", "head"}
        assert 0 < total["spike_rate"] < 1
    # each target simulates the network re-quantised to its widths: same shape, so the same
    # neuron updates; spikes may move a little; the prices differ per chip
    assert len({t["total"]["neuron_updates"] for t in chips}) == 1
    synops = [t["total"]["synops"] for t in chips]
    assert max(synops) < 1.2 * min(synops)
    assert len({t["total"]["energy_j"] for t in chips}) == 3
    assert chips[0]["total"]["cores"] < chips[1]["total"]["cores"]  # 8192 vs 1024 per core
    gpu = report["targets"][-1]
    assert gpu["kind"] == "dense" and gpu["total"]["macs"] > 0 and gpu["total"]["energy_j"] > 0


def test_the_gpu_comparison_row_is_added_when_not_asked_for(tiny_gpt2_artifact, tmp_path):
    report = report_artifact(tiny_gpt2_artifact, ["loihi2"], tmp_path / "r", prompt="Hello")
    assert [t["target"] for t in report["targets"]] == ["loihi2", "h100"]
    assert report["prompt_tokens"] == 2  # BOS + "Hello"


def test_report_batch_and_calibrated_baseline(tiny_gpt2_artifact, tmp_path, capsys):
    """``stac report --batch 8``: the chip row at 8 conversations in flight, the batch sweep,
    and the Jetson's calibrated figure with its roofline beside it."""
    out = tmp_path / "r"
    argv = ["report", str(tiny_gpt2_artifact), "--targets", "loihi2,jetson-orin-nano"]
    assert main([*argv, "--batch", "8", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "batch 8" in printed and "loihi2: best batch " in printed
    assert "jetson-orin-nano: baseline = published measurement" in printed
    data = json.loads((out / "report.json").read_text())
    assert data["batch"] == 8
    chip, jetson = data["targets"][0], data["targets"][1]
    t = chip["total"]
    assert t["static_power_w"] == pytest.approx(0.282 * t["chips"])  # loihi2.toml, per chip
    b8 = t["at_batch"]
    rate = min(8 / t["latency_s"], 1 / t["pipeline_stage_s"])
    assert b8["tokens_per_s"] == pytest.approx(rate)
    assert b8["energy_j"] == pytest.approx(
        t["chip_dynamic_energy_j"]
        + t["host_energy_j"]
        + t["link_energy_j"]
        + t["static_power_w"] / rate
    )
    assert [b["batch"] for b in t["batches"]] == [1, 2, 4, 8, 16, 32, 64]
    assert t["batches"][0]["energy_j"] == pytest.approx(t["energy_j"])
    assert jetson["total"]["basis"] == "calibrated"
    assert jetson["total"]["roofline_energy_j"] > 0
    md = (out / "report.md").read_text()
    assert "### loihi2: batches" in md and "| at batch: mJ |" in md
    assert main([*argv, "--batch", "0", "--output-dir", str(tmp_path / "bad")]) == 2


def test_report_with_the_lm_head_on_the_host(tiny_gpt2_artifact, tmp_path, capsys):
    """``--host-nodes lm_head_in,lm_head``: fewer cores, the head's work priced on the host;
    a name that is not a node is one error line."""
    on = report_artifact(tiny_gpt2_artifact, ["loihi2"], tmp_path / "a", prompt="Hello")
    off = report_artifact(
        tiny_gpt2_artifact,
        ["loihi2"],
        tmp_path / "b",
        prompt="Hello",
        host_nodes=["lm_head_in", "lm_head"],
    )
    head_on = next(n for n in on["targets"][0]["nodes"] if n["node"] == "lm_head")
    head_off = next(n for n in off["targets"][0]["nodes"] if n["node"] == "lm_head")
    assert head_on["unit"] == "chip" and head_off["unit"] == "host"
    assert off["targets"][0]["total"]["cores"] == (
        on["targets"][0]["total"]["cores"]
        - head_on["cores"]
        - next(n["cores"] for n in on["targets"][0]["nodes"] if n["node"] == "lm_head_in")
    )
    assert head_off["host_flops"] == pytest.approx(head_off["synops"])  # one flop per synop
    assert off["host_nodes"] == ["lm_head", "lm_head_in"]
    capsys.readouterr()  # the progress bars of the two reports above
    err = _fails(
        capsys,
        "report",
        str(tiny_gpt2_artifact),
        "--host-nodes",
        "lm_head,nope",
        "--output-dir",
        str(tmp_path / "c"),
    )
    assert "host_nodes names 'nope'" in err


def _fails(capsys, *argv):
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("stac: error: ") and err.count("\n") == 1
    return err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--targets", "loihi2,loihi9"], "unknown target 'loihi9'; known profiles: h100"),
        (["--targets", "loihi2,,h100"], "comma-separated list"),
        (["--targets", "loihi2,/nonexistent/chip.toml"], "cannot be read"),
        (["--prompt", "  "], "the prompt is empty"),
        (["--baseline", "loihi2"], "is a neuromorphic profile"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tiny_gpt2_artifact, tmp_path, capsys, args, message
):
    out = tmp_path / "out"
    err = _fails(capsys, "report", str(tiny_gpt2_artifact), "--output-dir", str(out), *args)
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_an_artifact_from_another_report_schema_is_refused(tiny_gpt2_artifact, tmp_path, capsys):
    import shutil

    from stac.artifact import write_manifest

    old = tmp_path / "old"
    shutil.copytree(tiny_gpt2_artifact, old)
    report = json.loads((old / "report.json").read_text())
    (old / "report.json").write_text(json.dumps({**report, "schema_version": 0}))
    write_manifest(old)  # as a stac of another report schema would have written it
    err = _fails(capsys, "report", str(old), "--output-dir", str(tmp_path / "out"))
    assert "report schema version 0" in err and "recompile" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    err = _fails(capsys, "report", str(tmp_path / "nothing"), "--output-dir", str(tmp_path / "o"))
    assert "not a stac artifact" in err


def test_existing_output_needs_force(multi_report, tiny_gpt2_artifact, capsys):
    out, _ = multi_report
    before = (out / "report.json").read_text()
    err = _fails(capsys, "report", str(tiny_gpt2_artifact), "--output-dir", str(out))
    assert "exists; pass --force" in err and (out / "report.json").read_text() == before


def test_cli_prints_the_per_token_table(tiny_gpt2_artifact, tmp_path, capsys):
    out = tmp_path / "r"
    assert (
        main(
            [
                "report",
                str(tiny_gpt2_artifact),
                "--targets",
                "loihi2,truenorth,h100",
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "loihi2" in printed and "truenorth" in printed and "float bf16" in printed
    assert (out / "report.md").is_file()


def test_report_on_the_bundled_model(smollm2_artifact, tmp_path):
    """The real SmolLM2 (30 layers) on loihi2 beside the float model on the H100 profile."""
    report = report_artifact(smollm2_artifact, ["loihi2"], tmp_path / "r")
    chip, gpu = report["targets"]
    assert set(chip["layers"]) == {f"layer{i}" for i in range(30)} | {"embed", "head"}
    total = chip["total"]
    assert total["chips"] >= 2 and 0 < total["spike_rate"] < 1
    assert total["chip_static_energy_j"] > total["chip_dynamic_energy_j"] > 0
    # the float model reads ~135M bf16 weights per token: memory-bound on the H100 profile
    assert gpu["total"]["bound"] == "memory"
    assert 1.0e8 < gpu["total"]["macs"] < 1.5e8
    assert 2.0e8 < gpu["total"]["bytes"] < 3.0e8


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "{ 2 = 1000.0, 4 = 1400.0, 29 = 1800.0 }",
            "{ two = 1000.0 }",
            "'latency_ns.barrier_by_tiles' has key 'two'",
        ),
        (
            "{ 2 = 1000.0, 4 = 1400.0, 29 = 1800.0 }",
            "{ 2 = -1.0 }",
            "'latency_ns.barrier_by_tiles.2' must be a number >= 0",
        ),
        (
            "{ 2 = 1000.0, 4 = 1400.0, 29 = 1800.0 }",
            "1000.0",
            "'latency_ns.barrier_by_tiles' must be a table",
        ),
        ("\n[host_link]", "\n[host_lnk]", "unknown field .host_lnk."),
    ],
)
def test_new_profile_fields_are_checked(tmp_path, old, new, message):
    from stac.profiles import PROFILE_DIR, load_profile_file

    text = (PROFILE_DIR / "loihi1.toml").read_text()
    assert text.count(old) == 1
    path = tmp_path / "chip.toml"
    path.write_text(text.replace(old, new))
    with pytest.raises(StacError, match=message):
        load_profile_file(path)
