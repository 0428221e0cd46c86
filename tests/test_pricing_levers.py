"""Issue 15's host-link levers against hand arithmetic: coalesced transfers across a lockstep
group of conversations, and values on the link at the width the artifact bounds them to."""

import dataclasses
import json
import math

import nir
import numpy as np
import pytest
import torch

from stac.cli import main
from stac.errors import StacError
from stac.ir import make_graph
from stac.ir.nodes import RMSNorm, SignedIF
from stac.ir.passes.common import with_metadata
from stac.ir.results import NodePlacement
from stac.profiles import load_profile
from stac.sim.cost import node_costs, summarise
from stac.sim.link_width import value_bits, value_bytes
from stac.sim.neurons import onset_quantiser
from stac.sim.pricing import batch_figures, batch_sweep
from stac.sim.semantics import NodeStats

US, NS = 1e-6, 1e-9


def _chip():
    """Loihi 2 with round figures: 1 us and 1 GB/s on the link, the stage of
    tests/test_cost_report.py (5 steps of 117.5 ns at T = 4)."""
    p = load_profile("loihi2")
    values = {k: dict(v) for k, v in p.values.items()}
    values["energy_pj"].update(
        synop=1.0, neuron_update=2.0, spike_out=4.0, spike=0.0, message_in=0.0
    )
    values["latency_ns"].update(
        synop=1.0,
        neuron_update=2.0,
        spike_out=4.0,
        barrier=100.0,
        spike=0.0,
        message_in=0.0,
        barrier_by_tiles={},
    )
    values["host_link"].update(
        bandwidth_gb_s=1.0, latency_us=1.0, energy_pj_per_byte=1.0, bytes_per_value=4
    )
    values["mesh"].update(tiles_x=2, tiles_y=2, cores_per_tile=32, hop_latency_ns=1.0)
    values["chip"].update(static_power_w=1.0)
    return dataclasses.replace(p, values=values)


def _graph(enc=None, lin=None):
    """input -> norm (host) -> SignedIF (3) -> Linear 3->2 -> output (host), hand-placed."""
    nodes = {
        "input": nir.Input(np.array([3])),
        "norm": RMSNorm(weight=np.ones(3, np.float32), eps=1e-6),
        "enc": enc or SignedIF(threshold=np.ones(3, np.float32)),
        "lin": lin or nir.Linear(weight=np.ones((2, 3), np.float32)),
        "output": nir.Output(np.array([2])),
    }
    place = {
        "input": {"unit": "host"},
        "norm": {"unit": "host"},
        "output": {"unit": "host"},
        "enc": {
            "unit": "chip",
            "cores": 1,
            "neurons": 3,
            "synapse_bytes": 0,
            "dest_cores_per_spike": 2.0,
            "hops_per_spike": 3.0,
            "chip_crossings_per_spike": 0.0,
        },
        "lin": {
            "unit": "chip",
            "cores": 2,
            "neurons": 2,
            "synapse_bytes": 6,
            "col_blocks": 1,
            "dest_cores_per_spike": 0.0,
            "hops_per_spike": 0.0,
        },
    }
    for name, p in place.items():
        nodes[name] = with_metadata(nodes[name], placement=NodePlacement(**p))
    edges = [("input", "norm"), ("norm", "enc"), ("enc", "lin"), ("lin", "output")]
    return make_graph(nodes, edges, {})


STATS = {  # one token, T = 4 (as tests/test_cost_report.py)
    "input": NodeStats(),
    "output": NodeStats(),
    "norm": NodeStats(host_flops=12),
    "enc": NodeStats(spikes=5, neuron_updates=12),
    "lin": NodeStats(synops=10, neuron_updates=8),
}


# --- coalesced transfers ----------------------------------------------------------------------


def test_group_figures_by_hand():
    """B conversations as B / g lockstep groups: a group's latency g (L - link) + fixed +
    g bytes, the link busy fixed / g + bytes per token; g = 1 is the plain pipeline."""
    total = {
        "latency_s": 10e-3,
        "link_latency_s": 4e-3,  # 30 transfers of 0.1 ms + 1 ms of bytes
        "link_fixed_s": 3e-3,
        "pipeline_stage_s": 4e-3,  # the link
        "pipeline_bottleneck": "host link",
        "pipeline_other_s": 2e-3,
        "pipeline_other": "chip stage 7",
        "energy_j": 40e-3,
        "chip_static_energy_j": 30e-3,  # 3 W x 10 ms
    }
    plain = batch_figures(total, 3.0, 8)
    assert plain["tokens_per_s"] == pytest.approx(min(8 / 10e-3, 1 / 4e-3))  # 250
    assert plain["bottleneck"] == "host link"
    one_group = batch_figures(total, 3.0, 8, group=8)  # the runtime's one call
    lat8 = 8 * 6e-3 + 3e-3 + 8 * 1e-3  # 59 ms
    assert one_group["group_latency_s"] == pytest.approx(lat8)
    assert one_group["tokens_per_s"] == pytest.approx(8 / lat8)  # 135.6, latency bound
    assert one_group["bound"] == "latency"
    two = batch_figures(total, 3.0, 8, group=4)
    lat4 = 4 * 6e-3 + 3e-3 + 4 * 1e-3  # 31 ms
    assert two["tokens_per_s"] == pytest.approx(min(8 / lat4, 1 / max(2e-3, 3e-3 / 4 + 1e-3)))
    many = batch_figures(total, 3.0, 32, group=4)  # 8 groups: the chip stage binds
    assert many["tokens_per_s"] == pytest.approx(500.0)
    assert many["bottleneck"] == "chip stage 7" and many["bound"] == "pipeline"
    assert many["chip_static_energy_j"] == pytest.approx(3.0 / 500)
    assert many["energy_j"] == pytest.approx(40e-3 - 30e-3 + 6e-3)
    assert many["latency_s"] == pytest.approx(32 / 500)  # each conversation waits its turn
    assert [b["batch"] for b in batch_sweep(total, 3.0, 4)] == [4, 8, 16, 32, 64, 128, 256]
    with pytest.raises(StacError, match="group must be a positive integer dividing the batch"):
        batch_figures(total, 3.0, 6, group=4)


def test_coalesced_transfers_on_a_small_graph_by_hand():
    """The priced graph: a chip stage of 5 x 117.5 ns, the norm's 12 flops at 50 GFLOP/s on
    the host, two transfers (3 and 2 values of 4 bytes) of 1 us + bytes at 1 GB/s. Groups of
    4 pay the 2 us once per group: the link falls below the chip stage."""
    chip = _chip()
    rows = node_costs(_graph(), STATS, chip, load_profile("host-cpu"), 4, 1)
    total = summarise(rows, chip, 1, 3, group=4)["total"]
    stage, host = 5 * 117.5 * NS, 12 / 50e9
    fixed, byte_s = 2 * US, (12 + 8) * NS
    assert total["link_transfers"] == 2 and total["link_values"] == 5
    assert total["link_fixed_s"] == pytest.approx(fixed)
    assert total["latency_s"] == pytest.approx(stage + host + fixed + byte_s)
    assert total["pipeline_bottleneck"] == "host link"
    assert total["pipeline_other"] == "chip stage 0"
    assert total["pipeline_other_s"] == pytest.approx(stage)
    b8 = batch_figures(total, 1.0, 8, group=4)
    lat4 = 4 * (stage + host) + fixed + 4 * byte_s
    link4 = fixed / 4 + byte_s  # 0.52 us < 0.5875 us
    assert b8["group_latency_s"] == pytest.approx(lat4)
    assert b8["tokens_per_s"] == pytest.approx(min(8 / lat4, 1 / max(stage, link4)))
    assert b8["bottleneck"] == "chip stage 0"
    assert [b["batch"] for b in total["batches"]] == [4 * n for n in (1, 2, 4, 8, 16, 32, 64)]
    one = batch_figures(total, 1.0, 8)  # g = 1: the link binds, as before
    assert one["tokens_per_s"] == pytest.approx(1 / (fixed + byte_s))


# --- link widths ------------------------------------------------------------------------------

Q = np.array([[1, -2, 3], [0, 5, -1]], np.float32)
SCALE = np.array([0.5, 0.25], np.float32)
THETA = np.array([1.0, 2.0, 4.0], np.float32)  # power-of-two multiples of the smallest


def _full_mode_pair(theta=THETA, q=Q, k=3):
    enc = SignedIF(threshold=theta, max_payload=k, onset_drive=True)
    lin = nir.Linear(weight=q * SCALE[:, None])
    lin = with_metadata(lin, quant={"bits": 8, "scale": SCALE, "scheme": "per-channel"})
    return enc, lin


def test_link_widths_by_hand():
    """T = 2, K = 3: the host sends levels in [-6, 6] (1 + ceil(log2 7) = 4 bits); the sums
    are at most T K sum_j |q_ij| theta_j / theta_min = 6 (1 + 2 x 2 + 3 x 4) = 102 (8 bits)."""
    enc, lin = _full_mode_pair()
    graph = _graph(enc, lin)
    assert value_bits(graph, "norm", "enc", True, 2) == (4, "")
    assert value_bits(graph, "lin", "output", False, 2) == (8, "")
    assert value_bits(graph, "norm", "enc", True, 64) == (1 + math.ceil(math.log2(64 * 3 + 1)), "")
    chip, host = _chip(), load_profile("host-cpu")
    by = {}
    for width in ("word", "bytes", "bits"):
        rows = node_costs(graph, STATS, chip, host, 2, 1, link_width=width)
        by[width] = summarise(rows, chip, 1, 3)["total"]
    assert by["word"]["link_bytes"] == 5 * 4
    assert by["bytes"]["link_bytes"] == 3 * 1 + 2 * 1  # int8 holds 4 and 8 bits
    assert by["bits"]["link_bytes"] == math.ceil(3 * 4 / 8) + math.ceil(2 * 8 / 8)
    assert by["bits"]["link_energy_j"] == pytest.approx(4 * 1e-12)
    saved = (by["word"]["link_bytes"] - by["bits"]["link_bytes"]) * NS  # 1 GB/s
    assert by["word"]["latency_s"] - by["bits"]["latency_s"] == pytest.approx(saved)
    assert value_bytes(10, 13, "bytes", 4) == 20 and value_bytes(10, 20, "bytes", 4) == 40


def test_the_level_the_host_sends_gives_the_encoders_own_output():
    """The width rests on this: the integer level clip(floor(T x / theta + 1/2), -T K, T K),
    sent in place of the drive, is quantised by the encoder to the same output."""
    gen = torch.Generator().manual_seed(0)
    theta = torch.tensor([1.0, 2.0, 4.0, 0.5])
    x = torch.randn(200, 4, generator=gen) * 20
    steps, k = 2, 3
    level = torch.floor(steps * x / theta + 0.5).clamp(-steps * k, steps * k)
    assert level.abs().max() < 2 ** (
        value_bits(_graph(*_full_mode_pair(k=k)), "norm", "enc", True, 2)[0] - 1
    )
    sent = level * theta / steps  # the drive that level stands for
    assert torch.equal(onset_quantiser(sent, theta, steps, k), onset_quantiser(x, theta, steps, k))


def test_no_bound_keeps_the_word_and_says_why():
    """A sum bound above 32 bits, and an encoder without onset drive, keep 4 bytes a value."""
    wide = np.array([1.0, 2.0**30, 1.0], np.float32)
    enc, lin = _full_mode_pair(theta=wide, q=np.full((2, 3), 127, np.float32))
    bits, why = value_bits(_graph(enc, lin), "lin", "output", False, 2)
    assert bits is None and "above 32" in why
    graph = _graph()  # a binary encoder with held drive (simplified mode)
    assert value_bits(graph, "norm", "enc", True, 2)[0] is None
    chip = _chip()
    rows = node_costs(graph, STATS, chip, load_profile("host-cpu"), 4, 1, link_width="bits")
    out = summarise(rows, chip, 1, 3)
    assert out["total"]["link_bytes"] == 5 * 4
    assert any("host link norm -> enc" in n and "4 bytes per value" in n for n in out["notes"])
    with pytest.raises(StacError, match="link width must be one of word, bytes, bits"):
        node_costs(graph, STATS, chip, load_profile("host-cpu"), 4, 1, link_width="nibbles")


# --- stac report --------------------------------------------------------------------------------


def test_report_group_and_link_width(tiny_gpt2_artifact, tmp_path, capsys):
    """``stac report --batch 8 --group 4 --link-width bits``: the row at 2 groups of 4, the
    sweep in groups of 4; a group that does not divide the batch is one error line."""
    out = tmp_path / "r"
    argv = ["report", str(tiny_gpt2_artifact), "--targets", "loihi2,jetson-orin-nano"]
    opts = ["--batch", "8", "--group", "4", "--link-width", "bits"]
    assert main([*argv, *opts, "--output-dir", str(out)]) == 0
    capsys.readouterr()
    data = json.loads((out / "report.json").read_text())
    assert data["group"] == 4 and data["link_width"] == "bits"
    t = data["targets"][0]["total"]
    assert t["at_batch"]["group"] == 4 and t["at_batch"]["batch"] == 8
    assert t["at_batch"] == pytest.approx(batch_figures(t, t["static_power_w"], 8, 4))
    assert [b["batch"] for b in t["batches"]] == [4, 8, 16, 32, 64, 128, 256]
    bad = ["--batch", "6", "--group", "4", "--output-dir", str(tmp_path / "bad")]
    assert main([*argv, *bad]) == 2
    assert "--group must be a positive integer dividing --batch (6)" in capsys.readouterr().err
