"""Issue 15's third lever: host ops moved onto the chip where the profile's ``[capabilities]``
says its neurons compute them, priced with the chip's figures; everything else stays on the
host and is named."""

import json
import math
from pathlib import Path

import nir
import numpy as np
import pytest

from stac.cli import main
from stac.errors import StacError
from stac.ir import make_graph
from stac.ir.nodes import Activation, Residual, RMSNorm, SignedIF
from stac.ir.passes import run_passes
from stac.ir.passes.common import chip_assignment
from stac.ir.passes.onchip import host_ops_left, move_host_ops
from stac.ir.results import node_placement
from stac.profiles import load_profile, load_profile_file
from stac.sim.cost import node_costs, summarise
from stac.sim.semantics import NodeStats

LOIHI2 = Path(__file__).resolve().parents[1] / "stac" / "hw_profiles" / "loihi2.toml"
N, T = 4, 2


def _enc():
    return SignedIF(threshold=np.ones(N, np.float32), max_payload=3, onset_drive=True)


def _lin(seed):
    return nir.Linear(weight=np.random.default_rng(seed).integers(-3, 4, (N, N)).astype(np.float32))


def _block():
    """x (host) -> enc1 -> lin1 -> res (+ x) -> norm -> enc2 -> lin2 -> output: a
    transformer's residual and norm between two chip stages."""
    nodes = {
        "input": nir.Input(np.array([N])),
        "enc1": _enc(),
        "lin1": _lin(1),
        "res": Residual(size=N),
        "norm": RMSNorm(weight=np.ones(N, np.float32), eps=1e-6),
        "enc2": _enc(),
        "lin2": _lin(2),
        "output": nir.Output(np.array([N])),
    }
    edges = [
        ("input", "enc1"),
        ("enc1", "lin1"),
        ("lin1", "res"),
        ("input", "res"),
        ("res", "norm"),
        ("norm", "enc2"),
        ("enc2", "lin2"),
        ("lin2", "output"),
    ]
    return make_graph(nodes, edges, {})


STATS = {
    "input": NodeStats(),
    "output": NodeStats(),
    "enc1": NodeStats(spikes=4, neuron_updates=N * T),
    "lin1": NodeStats(synops=16, neuron_updates=N * T),
    "res": NodeStats(host_flops=N),
    "norm": NodeStats(host_flops=4 * N),
    "enc2": NodeStats(spikes=4, neuron_updates=N * T),
    "lin2": NodeStats(synops=16, neuron_updates=N * T),
}


def _priced(graph, profile):
    fitted = run_passes(graph, profile)
    rows = node_costs(fitted, STATS, profile, load_profile("host-cpu"), T, 1)
    return fitted, {r.node: r for r in rows}, summarise(rows, profile, 1, 1)


def test_residual_and_norm_on_chip_by_hand():
    """Moved: 3 transfers instead of 4 (x to enc1 and to res, lin2 to the output); one chip
    stage of depth lin1 + res (1) + norm (2 + 1) + lin2 = 6 steps; each moved op priced per
    value as its [capabilities] row says, with no host arithmetic."""
    loihi2 = load_profile("loihi2")
    _, before, sum_before = _priced(_block(), loihi2)
    assert sum_before["total"]["link_transfers"] == 4
    assert before["res"].unit == before["norm"].unit == "host"
    fitted, rows, summary = _priced(move_host_ops(_block(), loihi2), loihi2)
    total = summary["total"]
    assert total["link_transfers"] == 3 and total["link_values"] == 3 * N
    res, norm = rows["res"], rows["norm"]
    assert res.unit == norm.unit == "chip"
    assert node_placement(fitted.nodes["norm"]).neurons == N  # units = 1 per value
    assert res.chip_neuron_updates == N * 1 * T and norm.chip_neuron_updates == N * 1 * T
    assert res.synops == 2 * N  # one per value of each input, no extra
    assert norm.synops == N + 3 * N  # its input, then square, inverse norm and weight
    assert res.spikes == norm.spikes == N  # one graded value each per token
    assert res.host_flops == norm.host_flops == 0 and res.host_energy_j == 0
    assert res.update_energy_j == pytest.approx(N * T * 72.8e-12)  # loihi2 neuron_update
    chip = [r for r in rows.values() if r.unit == "chip"]
    assert {r.stage for r in chip} == {0}
    route = sum(r.hops for r in chip) / sum(r.messages for r in chip)
    step = max(r.core_step_s for r in chip) + route * 5.3e-9 + 1000e-9  # hop, 2-tile barrier
    stage = sum(r.latency_s - r.link_latency_s for r in chip)
    assert stage == pytest.approx((T + 6) * step)
    assert any("Residual on the chip" in n for n in summary["notes"])


def test_a_moved_residual_sends_its_stated_width(tmp_path):
    """With only the residual on the chip, res -> norm (host) is its value: at ``value_bits``
    of its [capabilities] row (24, GradedVec's) under ``--link-width bits``, the word when the
    row states none; input -> res (host -> chip) likewise."""
    rows = {}
    for bits in (24, 0):
        extra = f", value_bits = {bits}" if bits else ""
        prof = load_profile_file(
            _profile_with(
                tmp_path, f'[capabilities]\nResidual = {{ units = 1{extra}, source = "x" }}\n'
            )
        )
        fitted = run_passes(move_host_ops(_block(), prof), prof)
        priced = node_costs(fitted, STATS, prof, load_profile("host-cpu"), T, 1, link_width="bits")
        rows[bits] = {r.node: r for r in priced}
    assert rows[24]["norm"].link_bytes == math.ceil(N * 24 / 8)  # res -> norm
    assert rows[24]["res"].link_bytes == math.ceil(N * 24 / 8)  # input -> res
    assert rows[0]["norm"].link_bytes == N * 4  # no stated width: the 4-byte word


def test_a_host_op_between_chip_nodes_splits_their_stage():
    """enc1 -> lin1 -> act (host) -> enc2 -> lin2 -> res (+ lin1): one connected chip group,
    but enc2, lin2 and res wait for the host's act: two stages."""
    nodes = {
        "input": nir.Input(np.array([N])),
        "enc1": _enc(),
        "lin1": _lin(1),
        "act": Activation(size=N, kind="silu"),
        "enc2": _enc(),
        "lin2": _lin(2),
        "res": Residual(size=N),
        "output": nir.Output(np.array([N])),
    }
    edges = [
        ("input", "enc1"),
        ("enc1", "lin1"),
        ("lin1", "act"),
        ("act", "enc2"),
        ("enc2", "lin2"),
        ("lin2", "res"),
        ("lin1", "res"),
        ("res", "output"),
    ]
    loihi2 = load_profile("loihi2")
    graph = move_host_ops(make_graph(nodes, edges, {}), loihi2)
    stats = {**STATS, "act": NodeStats(host_flops=8 * N)}
    fitted = run_passes(graph, loihi2)
    rows = {r.node: r for r in node_costs(fitted, stats, loihi2, load_profile("host-cpu"), T, 1)}
    assert rows["act"].unit == "host" and rows["res"].unit == "chip"
    assert rows["enc1"].stage == rows["lin1"].stage
    assert rows["enc2"].stage == rows["lin2"].stage == rows["res"].stage != rows["lin1"].stage


def test_a_host_op_fed_by_the_host_alone_does_not_split_a_stage():
    """res (chip) adds lin1 and a host op of the input alone: the host op need not wait for
    the chip, so enc1, lin1 and res stay one stage."""
    nodes = {
        "input": nir.Input(np.array([N])),
        "pre": Activation(size=N, kind="silu"),
        "enc1": _enc(),
        "lin1": _lin(1),
        "res": Residual(size=N),
        "output": nir.Output(np.array([N])),
    }
    edges = [
        ("input", "enc1"),
        ("input", "pre"),
        ("enc1", "lin1"),
        ("lin1", "res"),
        ("pre", "res"),
        ("res", "output"),
    ]
    loihi2 = load_profile("loihi2")
    graph = move_host_ops(make_graph(nodes, edges, {}), loihi2)
    stats = {**STATS, "pre": NodeStats(host_flops=8 * N)}
    fitted = run_passes(graph, loihi2)
    rows = {r.node: r for r in node_costs(fitted, stats, loihi2, load_profile("host-cpu"), T, 1)}
    assert rows["pre"].unit == "host" and rows["res"].unit == "chip"
    assert rows["enc1"].stage == rows["lin1"].stage == rows["res"].stage


def _profile_with(tmp_path, capabilities):
    text = LOIHI2.read_text().split("[capabilities]")[0] + capabilities
    path = tmp_path / "chip.toml"
    path.write_text(text)
    return path


def test_a_capability_missing_from_the_profile_keeps_the_op_on_the_host(tmp_path):
    """A profile listing only Residual: the norm stays on the host even when asked for, and
    is named; a profile without [capabilities] moves nothing."""
    only_res = load_profile_file(
        _profile_with(tmp_path, '[capabilities]\nResidual = { units = 1, source = "x" }\n')
    )
    asked = move_host_ops(_block(), load_profile("loihi2"))  # asks for res and norm
    assert sorted(asked.metadata["chip_host_ops"]) == ["norm", "res"]
    where = chip_assignment(asked, only_res)
    assert where["res"] and not where["norm"]
    on_chip = {n for n, on in where.items() if on}
    assert host_ops_left(asked, on_chip) == {"RMSNorm": 1}
    rows = node_costs(run_passes(asked, only_res), STATS, only_res, load_profile("host-cpu"), T, 1)
    notes = summarise(rows, only_res, 1, 1)["notes"]
    assert any("host ops left on the host" in n and "RMSNorm (1)" in n for n in notes)
    bare = load_profile_file(_profile_with(tmp_path, ""))
    assert bare.capabilities == {}
    assert not any(chip_assignment(move_host_ops(_block(), bare), bare)[n] for n in ("res", "norm"))


@pytest.mark.parametrize(
    "row, message",
    [
        ("Residual = { units = 1 }", "field 'capabilities.Residual' has no source"),
        ('Residual = { units = 1, source = " " }', "field 'capabilities.Residual' has no source"),
        (
            'RMSNorm = { units = 1, cost = 3, source = "x" }',
            "field 'capabilities.RMSNorm' has unknown key(s) ['cost']",
        ),
        (
            'RMSNorm = { delay_steps = -1, source = "x" }',
            "field 'capabilities.RMSNorm.delay_steps' must be an integer",
        ),
    ],
)
def test_a_capability_without_a_source_is_refused_naming_the_field(tmp_path, row, message):
    path = _profile_with(tmp_path, f"[capabilities]\n{row}\n")
    with pytest.raises(StacError) as err:
        load_profile_file(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_every_bundled_capability_is_sourced_and_silu_is_not_listed():
    caps = load_profile("loihi2").capabilities
    assert set(caps) == {"Residual", "RMSNorm"}  # the SiLU gate and attention stay on the host
    assert all("lava-nc src/lava/proc/graded" in c.source for c in caps.values())


def test_report_host_ops_on_chip(tiny_gpt2_artifact, tmp_path, capsys):
    """``stac report --host-ops-on-chip`` with the bundled Loihi 2 profile: GPT-2's residual
    adds run on the chip, its LayerNorms (no capability) stay on the host and are named."""
    out = tmp_path / "r"
    argv = ["report", str(tiny_gpt2_artifact), "--targets", str(LOIHI2), "--baseline", "h100"]
    assert main([*argv, "--host-ops-on-chip", "--output-dir", str(out)]) == 0
    capsys.readouterr()
    data = json.loads((out / "report.json").read_text())
    assert data["host_ops_on_chip"] is True
    chip = data["targets"][0]
    units = {n["type"]: n["unit"] for n in chip["nodes"] if n["type"] in ("Residual", "LayerNorm")}
    assert units == {"Residual": "chip", "LayerNorm": "host"}
    assert any("host ops left on the host" in n and "LayerNorm" in n for n in chip["notes"])


def test_host_op_types_cut_the_capabilities_to_those_named():
    """``--host-op-types Residual``: only the residual add moves (the configuration whose
    fidelity holds in fixed point); a type the profile does not list is refused, naming
    what it lists."""
    loihi2 = load_profile("loihi2")
    residual_only = loihi2.only_capabilities("Residual")
    assert set(residual_only.capabilities) == {"Residual"}
    assert loihi2.only_capabilities(None) is loihi2
    asked = move_host_ops(_block(), residual_only)
    assert asked.metadata["chip_host_ops"] == ["res"]
    where = chip_assignment(asked, residual_only)
    assert where["res"] and not where["norm"]
    for bad in ("SiLU", "Residual,GatedActivation", " , "):
        with pytest.raises(StacError, match="lists RMSNorm, Residual \\[capabilities\\]"):
            loihi2.only_capabilities(bad)
