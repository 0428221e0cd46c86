"""SignedIF's dead zone: the float scan against its closed form, the chip's integer rule, the
unchanged default, every runner that honours or refuses it, and its training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stac.errors import StacError
from stac.ir import load, save
from stac.ir.graph import make_graph
from stac.ir.nodes import SignedIF
from stac.ir.passes.common import replace_fields
from stac.sim.neurons import (
    dead_zone_levels,
    onset_dead_zone_level,
    onset_level,
    signed_if_int_update,
    signed_if_scan,
    snap_dead_zone,
)

# --- the float rule -----------------------------------------------------------------------------


def test_hand_worked_onset_cases():
    """theta = 1, T = 2, K = 1, d = 1: T x = 1.2 fires +1 at step 0 and keeps 0.2 (silent);
    T x = 0.8 would fire without the zone but stays silent, potential 0.8 kept; T x = -1.0
    (= -d, inside [-d, d)) is silent; T x = 2.6 fires 1, then 1.6 >= 1 fires 1 again;
    T x = -2.2 fires -1, then -1.2 < -1 fires -1."""
    theta, dz = torch.tensor([1.0]), torch.tensor([1.0])
    want = {0.6: [1, 0], 0.4: [0, 0], -0.5: [0, 0], 1.3: [1, 1], -1.1: [-1, -1]}
    for x, spikes in want.items():
        got = signed_if_scan(torch.tensor([x]), theta, 2, False, 1, True, dz)
        assert got[:, 0].tolist() == spikes, x
    # without the zone, 0.4 fires (T x = 0.8 rounds to 1)
    assert signed_if_scan(torch.tensor([0.4]), theta, 2, False, 1, True)[:, 0].tolist() == [1, 0]


@pytest.mark.parametrize("steps,payload", [(2, 1), (2, 127), (4, 3), (16, 1)])
def test_onset_scan_equals_its_closed_form(steps, payload):
    """Total payload of the scan == sign(n0) min(|n0|, J K), nothing in [-d, d) (derived in
    onset_dead_zone_level's docstring), over random drives, thresholds and zones, some
    saturating (|T x| > K theta) so the zone cuts the drain short."""
    g = torch.Generator().manual_seed(steps * 1000 + payload)
    n = 20_000
    theta = 2.0 ** torch.randint(-3, 3, (n,), generator=g).double()
    x = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * theta * payload * 1.6
    dz = torch.rand(n, generator=g, dtype=torch.float64) * theta * 3 * payload
    total = signed_if_scan(x, theta, steps, False, payload, True, dz).sum(0)
    closed = onset_dead_zone_level(x, theta, steps, payload, dz)
    assert torch.equal(total, closed)
    silent = (steps * x >= -dz) & (steps * x < dz)
    assert bool((total[silent] == 0).all()) and bool(silent.any())
    assert bool((total[~silent] != 0).any())
    drained = (steps * x).abs() > payload * theta + dz  # the zone stopped a drain early?
    assert bool(drained.any())


def test_half_a_threshold_is_no_dead_zone():
    """d = theta / 2 is exactly the rule without a dead zone, ties included (the band
    [-theta/2, theta/2) is the rounding's zero set), in held, per-step and onset drive."""
    g = torch.Generator().manual_seed(3)
    theta = torch.tensor([0.5, 1.0, 2.0, 4.0]).repeat(500)
    x = torch.round((torch.rand(theta.shape, generator=g) * 6 - 3) * 8) / 8  # hits the ties
    for per_step, onset in ((False, False), (False, True)):
        plain = signed_if_scan(x, theta, 4, per_step, 3, onset)
        zoned = signed_if_scan(x, theta, 4, per_step, 3, onset, theta / 2)
        assert torch.equal(plain, zoned)
    # and the closed form reduces to the plain quantiser's level
    level = onset_dead_zone_level(x, theta, 4, 3, theta / 2)
    assert torch.equal(level, onset_level(x, theta, 4).clamp(-12, 12))


# --- the chip's integer rule ------------------------------------------------------------------


def test_integer_rule_with_levels_equals_the_float_rule_step_for_step():
    """Full mode on a chip: the host sends n = floor(T x / theta + 1/2) to a neuron of
    threshold 1; with |v| < D silent it emits what the float neuron with d = (D - 1/2) theta
    emits at every step (the band's integer image, ties included)."""
    g = torch.Generator().manual_seed(7)
    steps, k, n = 2, 5, 30_000
    theta = 2.0 ** torch.randint(-4, 4, (n,), generator=g).double()
    x = torch.round((torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 40) / 4 * theta
    levels = torch.randint(1, 6, (n,), generator=g)
    dz = (levels - 0.5) * theta
    want = signed_if_scan(x, theta, steps, False, k, True, dz)
    drive = onset_level(x, theta, steps).long().numpy()
    v = np.zeros(n, np.int64)
    dead = dead_zone_levels(dz.numpy(), theta.numpy(), "enc")
    assert np.array_equal(dead, levels.numpy())
    for t in range(steps):
        s, v = signed_if_int_update(v, drive if t == 0 else 0, 1, 2**23 - 1, k, dead)
        assert np.array_equal(s, want[t].long().numpy()), t
    assert np.count_nonzero(want) < np.count_nonzero(signed_if_scan(x, theta, steps, False, k, True))


def test_a_zone_off_the_chip_grid_is_refused_by_name():
    theta = np.array([1.0, 2.0])
    with pytest.raises(StacError, match="layer3_up_in"):
        dead_zone_levels(np.array([0.5, 1.7]), theta, "layer3_up_in")
    snapped = snap_dead_zone(np.array([0.5, 1.7, 0.1]), np.array([1.0, 2.0, 1.0]))
    assert snapped.tolist() == [0.5, 1.0, 0.5]  # D = 1, 1 (1.7 / 2 + 0.5 rounds to 1), 1


# --- the node and its file --------------------------------------------------------------------


def test_node_checks_its_dead_zone():
    theta = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="dead_zone"):
        SignedIF(threshold=theta, dead_zone=np.array([0.5, -1.0, 0.5], np.float32))
    with pytest.raises(ValueError, match="shape"):
        SignedIF(threshold=theta, dead_zone=np.ones(2, np.float32))


def test_files_without_a_dead_zone_are_unchanged_and_with_one_round_trip(tmp_path):
    """A graph without dead zones writes no 'dead_zone' key (the file as before) and loads
    with None; one with a zone writes and reads it back."""
    import nir

    def graph(node: SignedIF) -> nir.NIRGraph:
        nodes = {"input": nir.Input(np.array([3])), "enc": node, "output": nir.Output(np.array([3]))}
        return make_graph(nodes, [("input", "enc"), ("enc", "output")], {})

    plain = SignedIF(threshold=np.ones(3, np.float32), max_payload=3, onset_drive=True)
    json_path, _ = save(graph(plain), tmp_path / "plain.stac.json")
    assert "dead_zone" not in json_path.read_text()
    assert load(json_path).nodes["enc"].dead_zone is None
    zoned = replace_fields(plain, dead_zone=np.array([0.5, 1.5, 2.5], np.float32))
    json_path, _ = save(graph(zoned), tmp_path / "zoned.stac.json")
    assert json.loads(json_path.read_text())["nodes"]["enc"]["fields"]["dead_zone"]
    assert load(json_path).nodes["enc"].dead_zone.tolist() == [0.5, 1.5, 2.5]
