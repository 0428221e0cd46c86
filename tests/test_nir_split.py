"""``stac export-nir --split`` of a real converted transformer (GPT-2 shape, 2 layers).

What the parts contain: stac's SignedIF encoders cannot be written in NIR (signed spikes from
one membrane, firing at half threshold, reset by subtracting the threshold; NIR 1.0's neurons
emit 0/1 spikes and reset to v_reset), so each part is one linear map of the transformer (the
q/k/v, output, MLP and LM-head projections), fed through an Input by the encoder that the
manifest lists as a per-step host op. The parts hold no neurons, so "the same spikes" is
checked one level down: each part, driven by the spike train its encoder emitted in a stac
simulation of real text (16 tokens x T = 8 = 128 steps), gives the same value at every step in
live Norse and snnTorch as in stac's own step executor, and its mean over each token's T steps
is the value stac's simulator hands the next host op. The manifest is checked to rebuild every
edge of the graph.
"""

from __future__ import annotations

import json
import logging

import nir
import numpy as np
import pytest
import torch

from stac.cli import main
from stac.frontend import ConversionConfig, convert, load_model
from stac.ir import predecessors, save
from stac.ir.nir_io import read_nir
from stac.ir.nodes import SignedIF
from stac.sim import semantics
from stac.sim.semantics import RunContext
from stac.sim.simulator import Simulator
from stac.sim.stepper import Stepper

T = 8
TOKENS = 16


@pytest.fixture(scope="module")
def graph(tiny_gpt2_dir):
    return convert(
        load_model(str(tiny_gpt2_dir)), ConversionConfig(timesteps=T, calibration_passages=2)
    )


@pytest.fixture(scope="module")
def split(graph, tmp_path_factory):
    """The split export written by the CLI from the saved IR, and its manifest."""
    root = tmp_path_factory.mktemp("split")
    save(graph, root / "model.stac.json")
    out = root / "parts"
    assert main(["export-nir", str(root / "model.stac.json"), "--output", str(out), "--split"]) == 0
    return out, json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def recorded(graph, hamlet_ids):
    """A stac simulation of real text (Hamlet), recording what each SignedIF encoder emits at
    every step and what each linear map hands on, by wrapping (not replacing) their
    semantics."""
    spikes, maps = {}, {}

    def recording(table, kind):
        inner = semantics.SEMANTICS[kind]

        def run(node, inp, ctx, name, need):
            out, stats = inner(node, inp, ctx, name, need)
            table[name] = out
            return out, stats

        return run

    saved = dict(semantics.SEMANTICS)
    semantics.SEMANTICS[SignedIF] = recording(spikes, SignedIF)
    for kind in (nir.Affine, nir.Linear):
        semantics.SEMANTICS[kind] = recording(maps, kind)
    try:
        Simulator(graph).run(RunContext(hamlet_ids[None, 200 : 200 + TOKENS], steps=T))
    finally:
        semantics.SEMANTICS.clear()
        semantics.SEMANTICS.update(saved)
    return spikes, maps


def test_every_part_reads_back_with_nir_type_check_and_holds_one_linear_map(graph, split):
    out, manifest = split
    maps = [n for n, v in graph.nodes.items() if isinstance(v, (nir.Affine, nir.Linear))]
    assert len(manifest["parts"]) == len(maps) == 9  # 4 per layer + the LM head
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".stac-output", "manifest.json"] + [p["file"] for p in manifest["parts"]]
    )  # .stac-output: the marker of every directory stac writes (stac.files.MARKER)
    for part in manifest["parts"]:
        back = nir.read(out / part["file"], type_check=True)
        back.validate_structure()
        read_nir(out / part["file"], dt=1e-4)  # stac's own checks pass too
        compute = [n for n, v in back.nodes.items() if not isinstance(v, (nir.Input, nir.Output))]
        assert len(compute) == 1 and type(back.nodes[compute[0]]) in (nir.Affine, nir.Linear)
        assert part["neurons"] == []
        (src,) = [v["from"] for v in part["inputs"].values()]
        assert isinstance(graph.nodes[src], SignedIF)  # each map is fed by its encoder
    host = manifest["host_ops"]
    encoders = [n for n, v in graph.nodes.items() if isinstance(v, SignedIF)]
    assert {n for n, h in host.items() if h["runs"] == "per_step"} == set(encoders)
    assert manifest["timesteps"] == T and manifest["schedule"]


def test_manifest_rebuilds_every_edge_of_the_graph(graph, split):
    """Parts, host ops, graph inputs and outputs cover every node once, and the routes the
    manifest gives are exactly the graph's edges, read once from where each value comes from
    (part inputs, host-op inputs, graph outputs) and once from where it goes (part outputs,
    host-op consumers, graph inputs)."""
    out, manifest = split
    parts = {p["file"]: p for p in manifest["parts"]}
    owners = (
        [n for p in manifest["parts"] for n in p["nodes"]]
        + list(manifest["host_ops"])
        + list(manifest["graph_inputs"])
        + list(manifest["graph_outputs"])
    )
    assert sorted(owners) == sorted(graph.nodes)
    inside = set()
    for part in manifest["parts"]:
        back = {nir_name: name for name, nir_name in part["nodes"].items()}
        g = nir.read(out / part["file"])
        inside |= {(back[s], back[d]) for s, d in g.edges if s in back and d in back}

    def producer(ref):
        if "part" in ref:
            return parts[ref["part"]]["outputs"][ref["port"]]["from"]
        return ref.get("host_op") or ref["graph_input"]

    def consumers(ref):
        if "part" in ref:
            return parts[ref["part"]]["inputs"][ref["port"]]["to"]
        return [ref.get("host_op") or ref["graph_output"]]

    host = manifest["host_ops"].items()
    incoming = inside | {
        (v["from"], d) for p in manifest["parts"] for v in p["inputs"].values() for d in v["to"]
    }
    incoming |= {(producer(r), n) for n, op in host for r in op["inputs"]}
    incoming |= {(p, n) for n, ps in manifest["graph_outputs"].items() for p in ps}
    outgoing = inside | {
        (v["from"], d) for p in manifest["parts"] for v in p["outputs"].values() for d in v["to"]
    }
    outgoing |= {(n, c) for n, op in host for r in op["consumers"] for c in consumers(r)}
    outgoing |= {(n, c) for n, cs in manifest["graph_inputs"].items() for c in cs}
    assert incoming == set(graph.edges)
    assert outgoing == set(graph.edges)


def _per_step(signal: torch.Tensor) -> np.ndarray:
    """[T, 1, N, F] -> [N * T, F]: the tokens one after another, T steps each."""
    t, b, n, f = signal.shape
    return signal[:, 0].transpose(0, 1).reshape(n * t, f).numpy()


def _live(toolchain: str, path):
    graph = nir.read(path)
    if toolchain == "norse":
        import norse.torch as norse

        return norse.from_nir(graph, dt=1e-4, ignore_warnings=True)
    from snntorch.import_nir import import_from_nir

    return import_from_nir(graph)


def _run_live(module, x: np.ndarray) -> np.ndarray:
    state, out = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            y, state = module(torch.as_tensor(x[t : t + 1]), state)
            out.append(y[0].numpy().copy())
    return np.stack(out)


@pytest.mark.parametrize("toolchain", ["norse", "snntorch"])
def test_parts_run_live_with_the_same_values_as_stac(graph, split, recorded, toolchain, capsys):
    out, manifest = split
    spikes, maps = recorded
    pre = predecessors(graph)
    logging.disable(logging.WARNING)
    try:
        for part in manifest["parts"]:
            (port,) = part["inputs"].values()
            (name,) = [n for n in part["nodes"] if n in maps]
            x = _per_step(spikes[port["from"]].value)
            theta = graph.nodes[port["from"]].threshold
            assert x.shape[0] == TOKENS * T >= 100
            assert np.count_nonzero(x) > 0.01 * x.size  # the encoder really spikes
            assert set(np.unique(np.round(x / theta, 6))) <= {-1.0, 0.0, 1.0}
            run = Stepper(read_nir(out / part["file"], dt=1e-4)).run(x, record=[])
            (ours,) = [v[:, 0].numpy() for v in run.outputs.values()]
            theirs = _run_live(_live(toolchain, out / part["file"]), x)
            np.testing.assert_array_equal(theirs, ours, err_msg=f"{part['file']} ({name})")
            # the host reads the mean over each token's T steps: stac's simulator value
            host_value = ours.reshape(TOKENS, T, -1).mean(1)
            want = maps[name].mean()[0].numpy()
            scale = np.abs(want).max()
            np.testing.assert_allclose(host_value, want, atol=1e-5 * scale, rtol=0, err_msg=name)
            assert pre[name] == [port["from"]]
    finally:
        logging.disable(logging.NOTSET)
        capsys.readouterr()  # snnTorch prints while importing
