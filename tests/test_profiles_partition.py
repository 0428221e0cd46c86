"""Profiles are validated data; ``--target`` takes names and files; the partition pass is pure
and splits chip nodes into cores exactly as the limits say (Before / Expected graphs)."""

import json

import nir
import numpy as np
import pytest

from stac import StacError
from stac.backends import resolve_target, target_label, targets
from stac.cli import main
from stac.ir import make_graph
from stac.ir.nodes import RMSNorm, SignedIF
from stac.ir.capabilities import check_capabilities
from stac.ir.passes import partition, run_passes
from stac.ir.passes.partition import BLOCK_COLUMNS
from stac.ir.results import issues_of, node_placement, partition_of
from stac.profiles import PROFILE_DIR, load_profile, load_profile_file, profile_names

LOIHI2 = (PROFILE_DIR / "loihi2.toml").read_text()
H100 = (PROFILE_DIR / "h100.toml").read_text()


@pytest.mark.parametrize(
    "name", ["loihi2", "loihi1", "spinnaker2", "truenorth", "h100", "jetson-orin-nano", "host-cpu"]
)
def test_every_bundled_profile_loads_with_every_number_sourced(name):
    p = load_profile(name)
    assert p.name == name
    assert all(s.strip() for section in p.sources.values() for s in section.values())
    if p.kind == "neuromorphic":
        assert load_profile(p.host).kind == "host"
        assert all(cap.source.strip() for cap in p.ops.values())
        assert "SignedIF" in p.chip_ops and "Linear" in p.chip_ops
    else:
        assert p.get("dense", "peak_tflops") > 0 and p.get("dense", "power_w") > 0


def test_key_figures_from_the_files():
    assert load_profile("loihi2").get("chip", "cores_per_chip") == 128
    assert load_profile("loihi1").get("chip", "neurons_per_core") == 1024
    assert load_profile("truenorth").get("chip", "axons_in_per_core") == 256
    assert load_profile("loihi1").get("spikes", "graded") is False
    assert load_profile("loihi1").units(SignedIF(np.ones(2, np.float32))) == 2
    assert load_profile("loihi2").units(SignedIF(np.ones(2, np.float32))) == 1
    assert load_profile("h100").get("dense", "memory_bandwidth_gb_s") == 3350.0


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda t: t.replace(
                "neurons_per_core = { value = 8192", "neurons_per_core = { value = -5"
            ),
            "chip.neurons_per_core' must be positive",
        ),
        (
            lambda t: t.replace(
                "cores_per_chip = { value = 128", "cores_per_chip = { value = 12.5"
            ),
            "chip.cores_per_chip' must be a positive integer",
        ),
        (
            lambda t: t.replace("synop = { value = 35.5, source", "junk = { value = 35.5, source"),
            "missing field 'energy_pj.synop'",
        ),
        (
            lambda t: t.replace("[chip]", '[chip]\nwarp_drive = { value = 1, source = "x" }'),
            "unknown field 'chip.warp_drive'",
        ),
        (
            lambda t: t.replace('Linear = { run = "chip"', 'Linear = { run = "gpu"'),
            "'ops.Linear.run' must be one of",
        ),
        (
            lambda t: t.replace(
                'barrier = { value = 299.0, source = "Loihi 1 global barrier latency per '
                'timestep, SANA-FE arch/loihi.yaml" }',
                "barrier = { value = 299.0 }",
            ),
            "'latency_ns.barrier' has no source",
        ),
        (
            lambda t: t.replace("graded = { value = true", "graded = { value = 1"),
            "'spikes.graded' must be true or false",
        ),
        (
            lambda t: t.replace("payload_bits = { value = 32", "payload_bits = { value = 1"),
            "'spikes.payload_bits' must be 1 for binary spikes and more than 1 for graded",
        ),
        (
            lambda t: t.replace("tiles_y = { value = 4", "tiles_y = { value = 2"),
            "'mesh' holds 64 cores",
        ),
        (
            lambda t: t.replace("weight_exp_min = { value = -8", "weight_exp_min = { value = 9"),
            "'fixed_point.weight_exp_min' is above",
        ),
        (lambda t: t.replace('host = "host-cpu"\n', ""), "missing field 'host'"),
        (lambda t: t + "\n[[[", "not valid TOML"),
    ],
)
def test_bad_profiles_are_refused_naming_the_field(tmp_path, edit, message):
    path = tmp_path / "bad.toml"
    text = edit(LOIHI2)
    assert text != LOIHI2
    path.write_text(text)
    with pytest.raises(StacError, match=message):
        load_profile_file(path)


def test_an_unknown_op_capability_is_refused_before_use(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(LOIHI2.replace("SignedIF = { run", "Teleport = { run"))
    profile = load_profile_file(path)  # the file is well formed; the IR knows no Teleport
    with pytest.raises(StacError, match="unknown capability 'Teleport'"):
        check_capabilities(profile)
    with pytest.raises(StacError, match=f"hardware profile {path}: unknown capability 'Teleport'"):
        resolve_target(str(path))
    with pytest.raises(StacError, match="unknown capability 'Teleport'"):
        run_passes(
            make_graph(
                {"i": nir.Input(np.array([2])), "o": nir.Output(np.array([2]))}, [("i", "o")]
            ),
            profile,
        )


def test_a_host_profile_needs_its_roofline_figures(tmp_path):
    path = tmp_path / "gpu.toml"
    path.write_text(
        H100.replace("memory_bandwidth_gb_s = { value = 3350.0", "bandwidth = { value = 3350.0")
    )
    with pytest.raises(StacError, match="missing field 'dense.memory_bandwidth_gb_s'"):
        load_profile_file(path)


def test_a_calibrated_dense_figure_is_optional_but_sourced(tmp_path):
    """``[calibrated]`` (a published measurement, stac.sim.dense) may be left out; when
    present every number needs its source."""
    jetson = (PROFILE_DIR / "jetson-orin-nano.toml").read_text()
    without = jetson.split("[calibrated]")[0]
    path = tmp_path / "jetson.toml"
    path.write_text(without)
    assert "calibrated" not in load_profile_file(path).values
    path.write_text(jetson.replace("165.2, source =", "165.2, note ="))
    with pytest.raises(StacError, match="calibrated.tokens_per_s"):
        load_profile_file(path)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(StacError, match="known: " + ", ".join(profile_names())):
        load_profile("loihi9")


def test_targets_come_from_the_neuromorphic_profiles():
    assert sorted(targets()) == [
        "loihi1-sim",
        "loihi2-lava",
        "loihi2-sim",
        "spinnaker2-sim",
        "truenorth-sim",
    ]


def test_target_may_be_a_users_profile_file(tmp_path):
    path = tmp_path / "my-chip.toml"
    path.write_text(
        LOIHI2.replace('name = "loihi2"', 'name = "my-chip"').replace(
            "max_chips = { value = 1152", "max_chips = { value = 3"
        )
    )
    for target in (str(path), f"{path}:sim"):
        profile, backend = resolve_target(target)
        assert (profile.name, backend.name, profile.get("chip", "max_chips")) == (
            "my-chip",
            "sim",
            3,
        )
    assert target_label(str(path)) == "my-chip" and target_label("loihi2-sim") == "loihi2-sim"
    with pytest.raises(StacError, match="unknown backend 'fpga'"):
        resolve_target(f"{path}:fpga")
    with pytest.raises(StacError, match="is a host profile"):
        resolve_target(str(PROFILE_DIR / "h100.toml"))
    with pytest.raises(StacError, match="cannot be read"):
        resolve_target(str(tmp_path / "missing.toml"))


def test_stac_profiles_lists_every_profile_with_key_figures(capsys):
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    for name in profile_names():
        assert f"\n{name} " in "\n" + out
    assert "peak 989.4 TFLOP/s bf16" in out and "cores 128 x 8192 neurons" in out
    assert "fan-in 256 axons/core" in out  # truenorth


def _before(out_f=1000, in_f=300, thresholds=None):
    w = np.ones((out_f, in_f), np.float32)
    nodes = {
        "in": nir.Input(np.array([in_f])),
        "norm": RMSNorm(np.ones(in_f, np.float32), 1e-5),
        "enc": SignedIF(np.ones(in_f, np.float32) if thresholds is None else thresholds),
        "fc": nir.Linear(w),
        "dense": nir.Linear(np.ones((10, out_f), np.float32)),  # fed by a non-spike value
        "out": nir.Output(np.array([10])),
    }
    edges = [("in", "norm"), ("norm", "enc"), ("enc", "fc"), ("fc", "dense"), ("dense", "out")]
    return make_graph(nodes, edges)


def test_nodes_kept_on_the_host_by_choice():
    """``keep_on_host``: the named encoder and map run on the host (no cores), the rest as
    before; an unknown name is an error naming it."""
    from stac.ir.passes.partition import keep_on_host

    profile = load_profile("loihi2")
    before = _before()
    assert partition_of(partition(before, profile)).cores == 3 + 1  # fc's 3 blocks, enc's core
    after = partition(keep_on_host(before, ["enc", "fc"]), profile)
    assert {n: node_placement(v).unit for n, v in after.nodes.items()}["fc"] == "host"
    assert node_placement(after.nodes["enc"]).unit == "host"
    assert partition_of(after).cores == 0 and partition_of(after).chips == 0
    with pytest.raises(StacError, match="host_nodes names 'lm_head'"):
        keep_on_host(before, ["lm_head"])


def _blocks(*rows):
    return np.array(rows, dtype=np.int64).reshape(-1, len(BLOCK_COLUMNS))


def test_partition_before_expected():
    """loihi2: 8-bit weights, 128 KiB per core, 4096 axons: a 1000 x 300 map takes rows of
    300 B, at most 436 rows per core -> 3 balanced row blocks; its encoder feeds those 3 cores."""
    profile = load_profile("loihi2")
    before = _before()
    after = partition(before, profile)
    expected = {
        "in": {"unit": "host"},
        "norm": {"unit": "host"},
        "dense": {"unit": "host"},
        "out": {"unit": "host"},
        "fc": {
            "unit": "chip",
            "cores": 3,
            "first_core": 1,
            "neurons": 1000,
            "synapses": 300_000,
            "synapse_bytes": 300_000,
            "row_blocks": 3,
            "col_blocks": 1,
            "blocks": _blocks(
                (0, 333, 0, 300, 333, 99_900, 99_900, 300, 333),
                (333, 666, 0, 300, 333, 99_900, 99_900, 300, 333),
                (666, 1000, 0, 300, 334, 100_200, 100_200, 300, 334),
            ),
        },
        "enc": {
            "unit": "chip",
            "cores": 1,
            "first_core": 0,
            "neurons": 300,
            "synapses": 0,
            "synapse_bytes": 0,
            "fanout_cores": 3,
            "units": 1,
            "blocks": _blocks((0, 300, 0, 0, 300, 0, 0, 300, 900)),
        },
    }
    for name, want in expected.items():
        got = node_placement(after.nodes[name]).to_dict()
        assert set(got) == set(want), name
        for key, value in want.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(got[key], value, err_msg=f"{name}.{key}")
            else:
                assert got[key] == value, f"{name}.{key}"
    part = partition_of(after)
    assert (part.cores, part.chips, part.neurons, part.synapse_bytes) == (4, 1, 1300, 300_000)
    assert part.utilisation.synaptic_memory == pytest.approx(300_000 / (4 * 131072))
    assert after.edges == before.edges and list(after.nodes) == list(before.nodes)
    # the pass is pure: its input graph carries no placement
    assert all("placement" not in n.metadata for n in before.nodes.values())


def test_fan_in_beyond_a_core_is_split_with_accumulators_on_graded_chips():
    after = partition(_before(out_f=100, in_f=5000), load_profile("loihi2"))
    fc = node_placement(after.nodes["fc"])
    assert (fc.col_blocks, fc.row_blocks, fc.cores) == (2, 2, 5)
    np.testing.assert_array_equal(
        fc.blocks,
        _blocks(
            (0, 50, 0, 2500, 50, 125_000, 125_000, 2500, 50),
            (0, 50, 2500, 5000, 50, 125_000, 125_000, 2500, 50),
            (50, 100, 0, 2500, 50, 125_000, 125_000, 2500, 50),
            (50, 100, 2500, 5000, 50, 125_000, 125_000, 2500, 50),
            (0, 100, -1, -1, 100, 200, 200, 200, 100),
        ),
    )  # accumulators: 2 partial sums each
    notes = issues_of(after)["partition"]
    assert any(
        i.node == "fc" and i.level == "note" and i.limit == "chip.axons_in_per_core" for i in notes
    )


def test_fan_in_beyond_a_core_is_an_error_on_binary_spike_chips():
    """loihi1: a signed channel is two binary neurons, so 5000 inputs need 10000 axons > 4096."""
    after = partition(_before(out_f=100, in_f=5000), load_profile("loihi1"))
    errors = [i for i in issues_of(after)["partition"] if i.level == "error"]
    assert [(i.node, i.limit) for i in errors] == [("fc", "chip.axons_in_per_core")]
    assert "fan-in 5000 x 2 axon(s)" in errors[0].message
    assert node_placement(after.nodes["enc"]).neurons == 2 * 5000


def test_report_of_a_compile_carries_the_fit(tiny_gpt2_artifact):
    report = json.loads((tiny_gpt2_artifact / "report.json").read_text())
    fit = report["fit"]
    assert (
        fit["partition"]["profile"] == "loihi2"
        and fit["partition"]["cores"] == report["total"]["cores"]
    )
    assert fit["legality"]["errors"] == 0
    assert fit["traffic"]["placed"]["hops"] <= fit["traffic"]["sequential"]["hops"]
    assert any(q["kind"] == "weights" and q["bits"] == 8 for q in fit["quantisation"].values())
    assert "legality on loihi2" in (tiny_gpt2_artifact / "report.md").read_text()
