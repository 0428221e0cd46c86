"""Profiles are validated data; the partition pass is pure and counts cores from the profile."""

import math
from pathlib import Path

import nir
import numpy as np
import pytest

from stac import StacError
from stac.ir import make_graph
from stac.ir.nodes import RMSNorm, SignedIF
from stac.ir.passes import partition
from stac.profiles import PROFILE_DIR, load_profile, load_profile_file

LOIHI2 = (PROFILE_DIR / "loihi2.toml").read_text()


def test_loihi2_profile_has_sourced_numbers():
    p = load_profile("loihi2")
    assert p.get("chip", "cores_per_chip") == 128
    assert p.get("chip", "weight_bits") == 8
    assert all(s.strip() for section in p.sources.values() for s in section.values())
    assert load_profile(p.host).kind == "host"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("neurons_per_core = { value = 8192", "neurons_per_core = { value = -5"),
         "chip.neurons_per_core' must be positive"),
        (lambda t: t.replace('synop = { value = 35.5, source', 'junk = { value = 35.5, source'),
         "missing field 'energy_pj.synop'"),
        (lambda t: t.replace('SignedIF = { run', 'Teleport = { run'),
         "unknown capability 'Teleport'"),
        (lambda t: t.replace('barrier = { value = 299.0, source = "Loihi 1 global barrier latency per timestep, SANA-FE arch/loihi.yaml" }',
                             'barrier = { value = 299.0 }'),
         "'latency_ns.barrier' has no source"),
        (lambda t: t + "\n[[[", "not valid TOML"),
    ],
)
def test_bad_profiles_are_refused_naming_the_field(tmp_path, edit, message):
    path = tmp_path / "bad.toml"
    path.write_text(edit(LOIHI2))
    with pytest.raises(StacError, match=message):
        load_profile_file(path)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(StacError, match="known: h100, host-cpu, jetson-orin-nano, loihi1, loihi2, spinnaker2, truenorth"):
        load_profile("loihi9")


def _before():
    w = np.ones((1000, 300), np.float32)
    nodes = {
        "in": nir.Input(np.array([300])),
        "norm": RMSNorm(np.ones(300, np.float32), 1e-5),
        "enc": SignedIF(np.ones(300, np.float32)),
        "fc": nir.Linear(w),
        "dense": nir.Linear(np.ones((10, 1000), np.float32)),  # fed by a non-spike value
        "out": nir.Output(np.array([10])),
    }
    edges = [("in", "norm"), ("norm", "enc"), ("enc", "fc"), ("fc", "dense"), ("dense", "out")]
    return make_graph(nodes, edges)


def test_partition_before_expected():
    profile = load_profile("loihi2")
    before = _before()
    after = partition(before, profile)
    units = {n: node.metadata["placement"]["unit"] for n, node in after.nodes.items()}
    assert units == {"in": "host", "norm": "host", "enc": "chip", "fc": "chip",
                     "dense": "host", "out": "host"}
    fc = after.nodes["fc"].metadata["placement"]
    assert fc["synapse_bytes"] == 300_000  # 8-bit weights
    assert fc["cores"] == math.ceil(300_000 / 131072) == 3
    assert after.nodes["enc"].metadata["placement"]["cores"] == 1
    assert after.metadata["partition"] == {"profile": "loihi2", "cores": 4, "chips": 1}
    assert after.edges == before.edges
    # the pass is pure: its input graph carries no placement
    assert all("placement" not in n.metadata for n in before.nodes.values())


def test_a_network_too_large_for_the_profile_is_refused(tmp_path):
    small = tmp_path / "tiny-chip.toml"
    small.write_text(LOIHI2.replace("max_chips = { value = 1152", "max_chips = { value = 1")
                     .replace("cores_per_chip = { value = 128", "cores_per_chip = { value = 2"))
    with pytest.raises(StacError, match="needs 2 .* chips .* at most 1"):
        partition(_before(), load_profile_file(small))
