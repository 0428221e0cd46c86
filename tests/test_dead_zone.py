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
    assert np.count_nonzero(want) < np.count_nonzero(
        signed_if_scan(x, theta, steps, False, k, True)
    )


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
        nodes = {
            "input": nir.Input(np.array([3])),
            "enc": node,
            "output": nir.Output(np.array([3])),
        }
        return make_graph(nodes, [("input", "enc"), ("enc", "output")], {})

    plain = SignedIF(threshold=np.ones(3, np.float32), max_payload=3, onset_drive=True)
    json_path, _ = save(graph(plain), tmp_path / "plain.stac.json")
    assert "dead_zone" not in json_path.read_text()
    assert load(json_path).nodes["enc"].dead_zone is None
    zoned = replace_fields(plain, dead_zone=np.array([0.5, 1.5, 2.5], np.float32))
    json_path, _ = save(graph(zoned), tmp_path / "zoned.stac.json")
    assert json.loads(json_path.read_text())["nodes"]["enc"]["fields"]["dead_zone"]
    assert load(json_path).nodes["enc"].dead_zone.tolist() == [0.5, 1.5, 2.5]


# --- runners: the simulator, training, the command, Lava --------------------------------------

T = 2


@pytest.fixture(scope="module")
def graded_artifact(tmp_path_factory, tiny_gpt2_dir):
    """The tiny GPT-2 in full mode (graded onset-driven encoders) at T = 2."""
    from stac.cli import main

    out = tmp_path_factory.mktemp("dz") / "tiny-full-t2"
    args = ["compile", "--model", str(tiny_gpt2_dir), "--mode", "full", "-T", str(T)]
    assert main(args + ["--calibration-passages", "1", "--output-dir", str(out)]) == 0
    return out


def _zoned_net(graded_artifact, text_file, quantile: float, **kw):
    from stac.artifact import load_artifact
    from stac.train.deadzone import init_dead_zones
    from stac.train.finetune import text_windows
    from stac.train.graphnet import GraphNet

    art = load_artifact(graded_artifact)
    data = text_windows(art.tokenizer(), text_file.read_text(), 24)
    net = GraphNet(art.graph, dead_zones=True, **kw)
    init_dead_zones(net, [data[:2], data[2:4]], T, quantile)
    return art, net, data


def test_trained_forward_with_dead_zones_is_the_simulators(graded_artifact, text_file):
    """The exported graph (zones on the chip grid) run by the reference simulator gives the
    differentiable forward's logits and spike counts exactly; the zones cut spikes."""
    from stac.sim.semantics import RunContext
    from stac.sim.simulator import Simulator

    art, net, data = _zoned_net(graded_artifact, text_file, 0.3)
    ids = data[4:6]
    with torch.no_grad():
        logits, out = net(ids, T)
    graph = net.export(T)
    for name in net.encoders:
        node = graph.nodes[name]
        dead_zone_levels(node.dead_zone, node.threshold, name)  # on the chip's grid
    ref, stats = Simulator(graph).run(RunContext(ids, steps=T))
    assert torch.equal(logits, ref["output"])
    for name, counts in out.counts.items():
        assert int(counts.sum()) == stats[name].spikes
    _, plain = Simulator(art.graph).run(RunContext(ids, steps=T))
    before = sum(plain[n].spikes for n in net.encoders)
    after = sum(stats[n].spikes for n in net.encoders)
    assert after < 0.85 * before, (before, after)


def test_the_l1_term_reaches_the_dead_zones(graded_artifact, text_file):
    """The spike count's gradient through the mask's surrogate is non-zero on the
    log-dead-zones and negative overall (a wider zone, fewer spikes); the KL alone pulls
    the other way on some."""
    _, net, data = _zoned_net(graded_artifact, text_file, 0.3, learn=("dead_zones",))
    _, out = net(data[4:6], T)
    sum(c.sum() for c in out.counts.values()).backward()
    grads = torch.cat([net.params[k].grad.flatten() for k in net.params if "dead_zone" in k])
    assert int((grads != 0).sum()) > 0.05 * grads.numel()
    assert float(grads.sum()) < 0


def test_finetune_learns_dead_zones_and_writes_a_legal_artifact(
    graded_artifact, text_file, tmp_path
):
    from stac.artifact import load_artifact
    from stac.cli import main
    from stac.commands.eval import run_eval
    from stac.ir.results import legality_of

    out = tmp_path / "ft"
    args = ["finetune", str(graded_artifact), "--text", str(text_file), "--output-dir", str(out)]
    args += ["--steps", "3", "--seq-len", "24", "--spike-l1", "1", "--dead-zone-lr", "0.2"]
    assert main(args + ["--dead-zone-init", "0.2", "--checkpoint-every", "3"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["spikes_per_token"] < history[0]["spikes_per_token"]
    art = load_artifact(out / "artifact")
    legal = legality_of(art.graph)
    assert legal is not None and legal.errors == 0
    zoned = [n for n, v in art.graph.nodes.items() if isinstance(v, SignedIF)]
    assert all(art.graph.nodes[n].dead_zone is not None for n in zoned)
    layers = art.graph.metadata["quantise"]["layers"]
    assert max(layers[n].get("dead_zone_levels_max", 1) for n in zoned) > 1
    base = run_eval(graded_artifact, [T], text_file, window=24, max_tokens=46)["results"][0]
    doc = run_eval(out / "artifact", [T], text_file, window=24, max_tokens=46)["results"][0]
    assert doc["spike_rate"] < 0.9 * base["spike_rate"]
    assert doc["perplexity_ratio"] > 0


def test_a_dead_zone_off_the_grid_does_not_fit_and_names_the_encoder(graded_artifact):
    from stac.artifact import load_artifact
    from stac.backends import resolve_target
    from stac.ir.passes import run_passes

    art = load_artifact(graded_artifact)
    name = next(n for n, v in art.graph.nodes.items() if isinstance(v, SignedIF))
    node = art.graph.nodes[name]
    bad = replace_fields(node, dead_zone=(node.threshold * 0.7).astype(np.float32))
    graph = make_graph({**art.graph.nodes, name: bad}, art.graph.edges, art.graph.metadata)
    profile, _ = resolve_target("loihi2-sim")
    with pytest.raises(StacError, match=f"{name}: its dead zone is not"):
        run_passes(graph, profile)


def test_lava_process_with_dead_zones_equals_stac_and_the_closed_form():
    """The recorded SmolLM2 full-mode block (T = 16, K = 1354, levels up to ~9,600, so tokens
    drain over several steps) with a dead zone D per neuron: real Lava equals stac's fixed
    point bit for bit, and each token's payloads sum to the closed form
    (onset_dead_zone_level at d = D - 1/2 levels)."""
    from stac.backends.lava.backend import lava_available, lava_format, run_block_lava
    from stac.backends.lava.blocks import ChannelGroup, DenseBlock, EncoderBlock
    from stac.backends.lava.fixed import run_block_fixed
    from stac.backends.lava.host import first_difference
    from stac.profiles import load_profile

    if not lava_available():
        pytest.skip("lava-nc is not installed (bash scripts/setup_lava.sh)")
    from pathlib import Path

    data = np.load(Path(__file__).parent / "data" / "lava" / "block_smollm2_full_o_proj.npz")
    groups = [
        ChannelGroup(data[f"group{i}_index"], data[f"group{i}_mult"], int(data["factors"][i]))
        for i in range(len(data["factors"]))
    ]
    steps, k = int(data["steps"]), int(data["max_payload"])
    dead = np.random.default_rng(0).integers(1, 3000, data["threshold"].size)
    block = EncoderBlock(
        "o_proj_in",
        data["threshold"],
        1,
        groups,
        k,
        True,
        False,
        [DenseBlock("map", data["weights"].astype(np.int64), -1, data["scale"], None)],
        dead=dead,
    )
    fmt = lava_format(load_profile("loihi2"))
    drive = data["drive"]
    lava = run_block_lava(block, drive, steps, fmt)
    fixed = run_block_fixed(block, drive, steps, fmt)
    assert first_difference(lava, fixed) is None
    tokens = (drive.shape[0] - 1) // steps
    level = (lava.payload[: tokens * steps] // block.mult()).reshape(tokens, steps, -1).sum(1)
    n = torch.as_tensor(drive[: tokens * steps : steps], dtype=torch.float64)
    want = onset_dead_zone_level(
        n / steps, torch.ones(1, dtype=torch.float64), steps, k, torch.as_tensor(dead - 0.5)
    )
    assert np.array_equal(level, want.long().numpy())
    silenced = np.count_nonzero(data["payload"]) - np.count_nonzero(lava.payload)
    assert silenced > 0.1 * np.count_nonzero(data["payload"])


def test_a_bundle_carries_the_dead_zones(graded_artifact, tmp_path, hamlet_ids):
    """Every encoder with d = 2.5 theta (D = 3): the bundle's logits equal the simulator's on
    the zoned graph (to 1e-5, its host stages being ONNX) and not the graph without zones."""
    import shutil

    from stac.artifact import IR_FILE, load_artifact, write_manifest
    from stac.bundle.runner import Bundle
    from stac.cli import main
    from stac.sim.semantics import RunContext
    from stac.sim.simulator import Simulator

    art = tmp_path / "art"
    shutil.copytree(graded_artifact, art)
    graph = load_artifact(art).graph
    plain = load_artifact(graded_artifact).graph
    for name, node in list(graph.nodes.items()):
        if isinstance(node, SignedIF):
            zone = (2.5 * node.threshold).astype(np.float32)
            graph.nodes[name] = replace_fields(node, dead_zone=zone)
    save(graph, art / IR_FILE)
    write_manifest(art)  # resealed: a deliberate edit
    assert main(["export", str(art), "--bundle", str(tmp_path / "bundle")]) == 0
    bundle = Bundle(tmp_path / "bundle")
    assert all("dead_zone" in s for s in bundle.manifest["schedule"] if s["run"] == "encoder")
    ids = hamlet_ids[None, 300:316]
    got, _ = bundle.run(ids)
    ref, _ = Simulator(graph).run(RunContext(ids, steps=T))
    without, _ = Simulator(plain).run(RunContext(ids, steps=T))

    def err(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).abs().max() / b.abs().max())

    assert err(got.logits, ref["output"]) <= 1e-5
    assert err(got.logits, without["output"]) > 1e-3


@pytest.mark.parametrize("score", ["drive", "output"])
def test_the_initial_zones_hold_the_quantile_of_their_score(graded_artifact, text_file, score):
    """After init at Q = 0.3, each encoder's zones (before the grid snap) hold at least 30 %
    of its (token, neuron) drives of the batches they were measured on; with the output score
    the zones differ between neurons as 1 / ||W_j|| (wider where the weights are small)."""
    from stac.artifact import load_artifact
    from stac.train.deadzone import column_norms, init_dead_zones
    from stac.train.finetune import text_windows
    from stac.train.graphnet import GraphNet, _key

    art = load_artifact(graded_artifact)
    data = text_windows(art.tokenizer(), text_file.read_text(), 24)
    net = GraphNet(art.graph, dead_zones=True)
    init_dead_zones(net, [data[:2]], T, 0.3, score)
    with torch.no_grad():  # the drive the zones were measured on: no zone upstream
        plain = GraphNet(art.graph)
        plain.capture = {}
        plain(data[:2], T)
    for name in net.encoders:
        drive = torch.cat(plain.capture[name])
        zone = getattr(net, _key(name, "dead_zone0"))
        assert float((drive < zone).float().mean()) >= 0.3 - 1e-3, name
        if score == "output":
            big = zone > net.threshold(name, T).detach() / 2
            prod = (zone * column_norms(net, name))[big]
            assert float(prod.max() / prod.min()) < 1 + 1e-4, name
