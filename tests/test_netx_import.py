"""netx import: lava-dl netx HDF5 files read into stac IR (stac.ir.netx_io) and run by stac's
bit-accurate runner (stac.sim.netx_fixed) agree bit for bit with lava-dl's
``netx.hdf5.Network`` run in Lava (``Loihi2SimCfg(select_tag="fixed_pt")``) on networks this
file builds with lava-dl's slayer, and with lava-dl's recorded PilotNet SDNN ground truth
(``tests/data/lava_dl/``, from lava-dl's ``tests/lava/lib/dl/netx/gts/pilotnet_sdnn/``, BSD-3).
What stac cannot import is refused by name; a malformed file is one clear error."""

from __future__ import annotations

from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch

from stac.backends.lava.netx import netx_available
from stac.errors import StacError
from stac.ir import load, save
from stac.ir.netx_io import netx_layers, read_netx
from stac.ir.netx_io.weights import netx_weight_fit
from stac.ir.nodes.loihi_cuba import LoihiCubaLIF
from stac.ir.nodes.sigma_delta import SigmaDelta
from stac.ir.serialize import node_fields
from stac.profiles import load_profile
from stac.sim.netx_fixed import NetxRunner
from stac.sim.sigma_delta import sigma_delta_initial_state, sigma_delta_params, sigma_delta_step

PROFILE = load_profile("loihi2")
DATA = Path(__file__).parent / "data" / "lava_dl" / "pilotnet_sdnn"
needs_netx = pytest.mark.skipif(not netx_available(),
                                reason="lava-dl netx is not installed (bash scripts/setup_lava.sh)")
STEPS = 24


# --- building networks with lava-dl and running them in Lava ---------------------------------


def _slayer():
    from lava.lib.dl import slayer

    return slayer


def export(path: Path, blocks: list, x: torch.Tensor, head: dict | None = None) -> Path:
    """Run slayer ``blocks`` once on ``x`` (so they know their shapes) and export them as a
    netx file; ``head`` writes a shape-only input layer first."""
    with torch.no_grad():
        for b in blocks:
            x = b(x)
    with h5py.File(path, "w") as f:
        layers = f.create_group("layer")
        offset = 0
        if head is not None:
            g = layers.create_group("0")
            g.create_dataset("type", (1,), "S10", [b"input"])
            g.create_dataset("shape", data=np.array(head["shape"]))
            offset = 1
        for i, b in enumerate(blocks):
            b.export_hdf5(layers.create_group(str(i + offset)))
    return path


def lava_layers(path: Path, x: np.ndarray) -> list[np.ndarray]:
    """netx.hdf5.Network(path) run in Lava (fixed_pt) on integer input ``x`` [T, *CHW]; the
    output of every block as [T, *CHW]."""
    from lava.lib.dl.netx import blocks, hdf5
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    def whc(a: np.ndarray) -> np.ndarray:  # [T, C, H, W] -> [W, H, C, T]
        return np.moveaxis(a, 0, -1) if a.ndim == 2 else a.transpose(3, 2, 1, 0)

    net = hdf5.Network(net_config=str(path))
    source = io.source.RingBuffer(data=whc(x).astype(np.int32))
    # netx's Input block leaves its inp port unconnected; lava-dl's own tests drive its neuron.
    first = net.layers[0]
    source.s_out.connect(first.neuron.a_in if isinstance(first, blocks.process.Input)
                         else net.inp)
    sinks = []
    for layer in net.layers:
        sink = io.sink.RingBuffer(shape=layer.out.shape, buffer=x.shape[0])
        layer.out.connect(sink.a_in)
        sinks.append(sink)
    try:
        net.run(condition=RunSteps(num_steps=x.shape[0]),
                run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        out = [s.data.get().astype(np.int64) for s in sinks]
    finally:
        net.stop()
    return [o.T if o.ndim == 2 else o.transpose(3, 2, 1, 0) for o in out]


def stac_layers(path: Path, x: np.ndarray) -> list[np.ndarray]:
    """The same file read by stac and run by its netx runner: every neuron's output."""
    graph = read_netx(path, PROFILE)
    traces = NetxRunner(graph, PROFILE).run(x).traces
    names = [n for n, v in graph.nodes.items() if isinstance(v, (SigmaDelta, LoihiCubaLIF))]
    return [traces[n][:, 0].numpy() for n in names]


def assert_bit_exact(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, (i, g.shape, w.shape)
        assert np.count_nonzero(w) > 0, f"layer {i} is silent: the test checks nothing there"
        assert np.array_equal(g, w), (i, np.argwhere(g != w)[:5])


def add_field(path: Path, layer: int, key: str, value: np.ndarray) -> None:
    with h5py.File(path, "r+") as f:
        f[f"layer/{layer}"].create_dataset(key, data=value)


# --- bit-exact against Lava ------------------------------------------------------------------


@needs_netx
def test_dense_cuba_bit_exact_with_lava(tmp_path):
    slayer = _slayer()
    torch.manual_seed(3)
    cuba = {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.03}
    blocks = [slayer.block.cuba.Dense(cuba, 12, 16, weight_scale=2),
              slayer.block.cuba.Dense(cuba, 16, 4, weight_scale=2)]
    for b in blocks:
        b.synapse.weight.data += 0.2
    path = export(tmp_path / "cuba.net", blocks, torch.zeros(1, 12, 2), head={"shape": [12]})
    add_field(path, 1, "bias", np.arange(-8, 8) * 3.0)
    x = (np.random.default_rng(0).random((STEPS, 12)) < 0.3).astype(np.int64)
    assert_bit_exact(stac_layers(path, x), lava_layers(path, x))


@needs_netx
def test_dense_sdnn_bit_exact_with_lava(tmp_path):
    slayer = _slayer()
    torch.manual_seed(5)
    sd = {"threshold": 0.1, "activation": torch.nn.functional.relu}
    blocks = [slayer.block.sigma_delta.Input(sd),
              slayer.block.sigma_delta.Dense(sd, 12, 16, weight_scale=2),
              slayer.block.sigma_delta.Output(sd, 16, 4, weight_scale=2)]
    path = export(tmp_path / "sdnn.net", blocks, torch.rand(1, 12, 2))
    add_field(path, 1, "bias", np.arange(16) - 4.0)
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.integers(-30, 40, (STEPS, 12)), 0).clip(0, 400)
    assert_bit_exact(stac_layers(path, x), lava_layers(path, x))


def pool_as_conv(src: Path, dst: Path, layer: int) -> Path:
    """``src`` with its pool layer rewritten as the depthwise conv a pool is (netx 0.6 cannot
    load pool layers): the reference Lava runs."""
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        f.copy("layer", g)
        pool = g[f"layer/{layer}"]
        weight, channels = pool["weight"][()], int(pool["shape"][()][0])
        k = [int(v) for v in pool["kernelSize"][()]]
        for key in ("type", "weight"):
            del pool[key]
        pool.create_dataset("type", (1,), "S10", [b"conv"])
        pool.create_dataset("weight", data=np.full((channels, 1, *k), weight.reshape(-1)[0]))
        pool.create_dataset("groups", data=channels)
    return dst


@needs_netx
@pytest.mark.parametrize("pool_weight", [None, 1], ids=["slayer-weight", "unit-weight"])
def test_conv_pool_flatten_dense_bit_exact_with_lava(tmp_path, pool_weight):
    slayer = _slayer()
    torch.manual_seed(7)
    cuba = {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.03}
    blocks = [slayer.block.cuba.Input(cuba), slayer.block.cuba.Conv(cuba, 2, 4, 3, weight_scale=2),
              slayer.block.cuba.Pool(cuba, 2), slayer.block.cuba.Flatten(),
              slayer.block.cuba.Dense(cuba, 36, 3, weight_scale=2)]
    blocks[1].synapse.weight.data += 0.3
    blocks[4].synapse.weight.data += 0.3
    path = export(tmp_path / "conv.net", blocks, torch.zeros(1, 2, 8, 8, 2))
    if pool_weight is not None:
        with h5py.File(path, "r+") as f:
            f["layer/2/weight"][...] = pool_weight
    graph = read_netx(path, PROFILE)
    pool = graph.nodes["layer2_pool"]
    assert isinstance(pool, nir.SumPool2d if pool_weight == 1 else nir.Conv2d)
    x = np.random.default_rng(2).integers(0, 160, (STEPS, 2, 8, 8))
    want = lava_layers(pool_as_conv(path, tmp_path / "twin.net", 2), x)
    assert_bit_exact(stac_layers(path, x), want)


# --- PilotNet SDNN against lava-dl's recorded ground truth -----------------------------------


def test_pilotnet_sdnn_matches_lava_dl_ground_truth():
    graph = read_netx(DATA / "network.net", PROFILE)
    frame = np.load(DATA / "input.npy")[..., 0].transpose(2, 1, 0)  # WHC -> CHW
    want = np.load(DATA / "output.npy").reshape(-1)
    # lava-dl's test feeds the one frame at every step and reads the Sigma output each step.
    result = NetxRunner(graph, PROFILE).run(np.repeat(frame[None], want.size, 0))
    got = result.outputs["output"].reshape(-1).numpy()
    assert np.count_nonzero(want) > 0 and np.array_equal(got, want.astype(np.int64))
    assert result.stats["layer1_conv"].synops > 0 and result.stats["layer0_sdnn"].spikes > 0


def test_pilotnet_sdnn_structure():
    graph = read_netx(DATA / "network.net", PROFILE)
    rows = netx_layers(graph)
    with h5py.File(DATA / "network.net", "r") as f:
        shapes = [list(f[f"layer/{i}/shape"][()]) for i in range(len(f["layer"]))]
    assert [r["type"] for r in rows] == ["input", "conv", "conv", "conv", "conv", "flatten",
                                         "dense", "dense", "dense", "dense"]
    for r, shape in zip(rows, shapes):
        if r["type"] != "flatten":
            assert r["shape"] == shape and r["neurons"] == int(np.prod(shape))
    assert [r["role"] for r in rows if r["neuron"] == "SigmaDelta"] == \
        ["input"] + ["hidden"] * 7 + ["readout"]
    # Closed forms: an unpadded 3x3x3 kernel reaches 27 inputs from each of 24x16x49 outputs;
    # a dense layer connects every pair.
    assert rows[1]["synapses"] == 24 * 16 * 49 * 27
    assert rows[6]["synapses"] == 2560 * 100 and rows[6]["weights"] == 2560 * 100


def test_pilotnet_graph_round_trips_through_stac_ir(tmp_path):
    graph = read_netx(DATA / "network.net", PROFILE)
    save(graph, tmp_path / "pilotnet.stac.json")
    back = load(tmp_path / "pilotnet.stac.json")
    assert list(back.nodes) == list(graph.nodes) and back.edges == graph.edges
    for name, node in graph.nodes.items():
        for key, value in node_fields(node).items():
            got = node_fields(back.nodes[name])[key]
            if isinstance(value, np.ndarray):
                assert np.array_equal(got, value), (name, key)


# --- the pieces, against closed forms and lava-dl ---------------------------------------------
