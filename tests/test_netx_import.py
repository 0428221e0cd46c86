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
needs_netx = pytest.mark.skipif(
    not netx_available(), reason="lava-dl netx is not installed (bash scripts/setup_lava.sh)"
)
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
    source.s_out.connect(first.neuron.a_in if isinstance(first, blocks.process.Input) else net.inp)
    sinks = []
    for layer in net.layers:
        sink = io.sink.RingBuffer(shape=layer.out.shape, buffer=x.shape[0])
        layer.out.connect(sink.a_in)
        sinks.append(sink)
    try:
        net.run(
            condition=RunSteps(num_steps=x.shape[0]), run_cfg=Loihi2SimCfg(select_tag="fixed_pt")
        )
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
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
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
    blocks = [
        slayer.block.cuba.Dense(cuba, 12, 16, weight_scale=2),
        slayer.block.cuba.Dense(cuba, 16, 4, weight_scale=2),
    ]
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
    blocks = [
        slayer.block.sigma_delta.Input(sd),
        slayer.block.sigma_delta.Dense(sd, 12, 16, weight_scale=2),
        slayer.block.sigma_delta.Output(sd, 16, 4, weight_scale=2),
    ]
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
    blocks = [
        slayer.block.cuba.Input(cuba),
        slayer.block.cuba.Conv(cuba, 2, 4, 3, weight_scale=2),
        slayer.block.cuba.Pool(cuba, 2),
        slayer.block.cuba.Flatten(),
        slayer.block.cuba.Dense(cuba, 36, 3, weight_scale=2),
    ]
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


def test_import_nir_runs_a_netx_file_through_the_passes_and_prices_it(tmp_path):
    """`stac import-nir FILE.net`: the same passes and report as a NIR file, run bit-accurately
    (the readout equals lava-dl's recorded ground truth), the SDNN layers on the chip."""
    import json
    import subprocess
    import sys

    frame = np.load(DATA / "input.npy")[..., 0].transpose(2, 1, 0)  # WHC -> CHW
    want = np.load(DATA / "output.npy").reshape(-1)
    np.save(tmp_path / "x.npy", np.repeat(frame[None], want.size, 0))
    out = tmp_path / "report"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stac.cli",
            "import-nir",
            str(DATA / "network.net"),
            "--target",
            "loihi2-sim",
            "--input",
            str(tmp_path / "x.npy"),
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "netx:network.net" and report["dt_s"] is None
    assert report["total"]["cores"] > 0 and report["total"]["chips"] == 1
    assert report["total"]["spikes"] > 0 and report["total"]["synops"] > 0
    assert report["output_spikes"]["output"] == int(np.count_nonzero(want))
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "stac.cli",
            "import-nir",
            str(DATA / "network.net"),
            "--reset",
            "zero",
            "--steps",
            "2",
            "--output-dir",
            str(tmp_path / "no"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--reset" in bad.stderr
    assert not (tmp_path / "no").exists()


def test_pilotnet_sdnn_structure():
    graph = read_netx(DATA / "network.net", PROFILE)
    rows = netx_layers(graph)
    with h5py.File(DATA / "network.net", "r") as f:
        shapes = [list(f[f"layer/{i}/shape"][()]) for i in range(len(f["layer"]))]
    assert [r["type"] for r in rows] == [
        "input",
        "conv",
        "conv",
        "conv",
        "conv",
        "flatten",
        "dense",
        "dense",
        "dense",
        "dense",
    ]
    for r, shape in zip(rows, shapes, strict=True):
        if r["type"] != "flatten":
            assert r["shape"] == shape and r["neurons"] == int(np.prod(shape))
    assert [r["role"] for r in rows if r["neuron"] == "SigmaDelta"] == ["input"] + [
        "hidden"
    ] * 7 + ["readout"]
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


def sd_run(node: SigmaDelta, inputs: list[int]) -> list[int]:
    p = sigma_delta_params(node, int(PROFILE.values["lava"]["message_bits"]))
    state, out = sigma_delta_initial_state((1,)), []
    for a in inputs:
        s, state = sigma_delta_step(torch.tensor([a]), state, p)
        out.append(int(s[0]))
    return out


def one(**kw) -> SigmaDelta:
    return SigmaDelta(np.array([kw.pop("bias", 0)], np.int64), **kw)


def test_sigma_delta_step_hand_traces():
    # sigma 1,1,1,-9 plus bias 2 through ReLU: y = 3,3,3,0; changes of at least vth 3 are sent.
    assert sd_run(one(bias=2, vth=3), [1, 0, 0, -10, 0]) == [3, 0, 0, -3, 0]
    # A change below vth waits as residue and goes out with the next one: y = 2, 4.
    assert sd_run(one(vth=3), [2, 2, 0]) == [0, 4, 0]
    # Scales: bias and vth shift by spike_exp + state_exp = 3; the payload shifts right by
    # state_exp 2: y = 16 + (1 << 3) = 24 -> 24 >> 2 = 6.
    assert sd_run(one(bias=1, vth=1, spike_exp=1, state_exp=2), [16]) == [6]
    # netx's Delta encoder: no integration, input shifted by input_exp; the right shift
    # rounds toward minus infinity (-9 >> 2 = -3).
    delta = dict(activation="identity", sigma=False)
    assert sd_run(one(state_exp=2, **delta), [0, -9]) == [0, -3]
    assert sd_run(one(input_exp=3, **delta), [1, 1, 3]) == [8, 0, 16]
    # cum_error: the accumulated error 3, 6 crosses vth 5 at the second step; without it the
    # change 3 never reaches 5.
    assert sd_run(one(vth=5, cum_error=True, **delta), [3, 3, 3]) == [0, 3, 0]
    assert sd_run(one(vth=5, **delta), [3, 3, 3]) == [0, 0, 0]
    # A sigma readout sends its running sum, in Lava's int32 (wrapping).
    readout = dict(activation="identity", delta=False)
    assert sd_run(one(**readout), [1, 2, 3]) == [1, 3, 6]
    assert sd_run(one(**readout), [2**31 - 1, 1]) == [2**31 - 1, -(2**31)]


@needs_netx
def test_weight_fit_agrees_with_lava_dl():
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    rng = np.random.default_rng(4)
    cases = [
        rng.integers(-30, 37, (6, 5)),
        rng.integers(0, 200, (4, 4)),
        rng.integers(-90, -3, (3, 7)),
        4 * rng.integers(-20, 20, (5, 5)),
        rng.integers(-256, 255, (6, 6)) // 2 * 2,
        np.array([[-1, -1], [-1, -1]]),
        np.array([[0, 5], [-7, 0]]),
        np.array([[-3, 0], [0, -2]]),
    ]
    for w in cases:
        fit = netx_weight_fit(w, int(PROFILE.get("chip", "weight_bits")))
        shifted, nwb, exp, _ = optimize_weight_bits(w.astype(np.float64))
        assert (fit.scale_bits, fit.num_weight_bits) == (-exp, nwb), w
        mode = determine_sign_mode(shifted)
        lava = truncate_weights(clip_weights(shifted, mode, 8), mode, nwb) if nwb > 0 else None
        kept = lava is not None and np.array_equal(lava, shifted)
        assert (fit.problem is None) == kept, (w, fit)


# --- the IR nodes ----------------------------------------------------------------------------

EXAMPLES = {
    "SigmaDelta": SigmaDelta(np.arange(-2, 4, dtype=np.int64), vth=3, spike_exp=6, state_exp=6),
    "LoihiCubaLIF": LoihiCubaLIF(
        np.arange(6, dtype=np.int64), i_decay=1024, v_decay=128, vth=80, bias_exp=6
    ),
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_new_nodes_round_trip_field_by_field(tmp_path, name):
    from stac.ir import make_graph

    node = EXAMPLES[name]
    graph = make_graph(
        {"in": nir.Input(np.array([6])), "n": node, "out": nir.Output(np.array([6]))},
        [("in", "n"), ("n", "out")],
    )
    save(graph, tmp_path / "g.json")
    back = load(tmp_path / "g.json").nodes["n"]
    assert type(back) is type(node)
    for key, value in node_fields(node).items():
        got = node_fields(back)[key]
        if isinstance(value, np.ndarray):
            assert got.dtype == value.dtype and np.array_equal(got, value)
        else:
            assert got == value and type(got) is type(value), key


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SigmaDelta(np.zeros(3)), "bias must hold integers"),
        (lambda: one(vth=-1), "vth must be >= 0"),
        (lambda: one(activation="tanh"), "is not one of"),
        (lambda: one(sigma=False, delta=False), "needs sigma or delta"),
        (lambda: one(state_exp=1.5), "state_exp must be an integer"),
        (lambda: LoihiCubaLIF(np.zeros(2, np.int64), -1, 0, 1), "i_decay must be >= 0"),
        (lambda: LoihiCubaLIF(np.int64(3), 0, 0, 1), "numpy array"),
    ],
)
def test_new_nodes_refuse_bad_fields(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# --- what stac refuses -----------------------------------------------------------------------


def write_net(path: Path, layers: list[dict]) -> Path:
    """A netx file in netx's layout, written field by field (``neuron`` a dict)."""
    with h5py.File(path, "w") as f:
        for i, layer in enumerate(layers):
            g = f.create_group(f"layer/{i}")
            for key, value in layer.items():
                if key == "neuron":
                    for k, v in value.items():
                        g.create_dataset(f"neuron/{k}", data=v)
                elif key == "type":
                    g.create_dataset("type", (1,), "S10", [value.encode()])
                else:
                    g.create_dataset(key, data=value)
    return path


SDNN = {"type": "SDNN", "activation": "relu", "vThMant": 4}
CUBA = {
    "type": "CUBA",
    "iDecay": 1024,
    "vDecay": 128,
    "vThMant": 80,
    "refDelay": 1,
    "gradedSpike": False,
}


def dense(n_in: int, n_out: int, neuron: dict | None = None, **extra) -> dict:
    w = np.arange(n_out * n_in).reshape(n_out, n_in) % 7 - 3.0
    return {"type": "dense", "shape": [n_out], "weight": w, "neuron": neuron or SDNN, **extra}


def test_unsupported_layers_and_neurons_are_named_in_one_error(tmp_path):
    path = write_net(
        tmp_path / "bad.net",
        [
            {"type": "input", "shape": [4], "neuron": SDNN},
            {"type": "dense_rec", "shape": [4], "weight": np.eye(4), "neuron": SDNN},
            dense(4, 4, {"type": "RF_PHASE", "vThMant": 1}),
            dense(4, 4, {**SDNN, "activation": "sigmoid"}),
            dense(4, 4, {**CUBA, "refDelay": 3}),
            dense(4, 4, CUBA, delay=np.ones(4)),
        ],
    )
    with pytest.raises(StacError) as err:
        read_netx(path, PROFILE)
    msg = str(err.value)
    for part in (
        "layer 1 (dense_rec): layer type 'dense_rec'",
        "layer 2 (dense): neuron type 'RF_PHASE'",
        "layer 3 (dense): SDNN activation 'sigmoid' (netx runs ReLU)",
        "layer 4 (dense): refractory delay 3",
        "layer 5 (dense): axonal delays",
    ):
        assert part in msg, (part, msg)
    assert msg.count("\n") == 0


@pytest.mark.parametrize(
    "layers, message",
    [
        (
            [{"type": "input", "shape": [4]}, {"type": "dense", "shape": [3], "neuron": SDNN}],
            r"layer 1 \(dense\): missing field 'weight'",
        ),
        ([{"type": "input", "shape": [5]}, dense(4, 3)], r"takes 4 inputs, 5 arrive"),
        (
            [{"type": "input", "shape": [4]}, {**dense(4, 3), "weight": np.full((3, 4), 0.5)}],
            r"layer 1 \(dense\): weight has fractional values",
        ),
        (
            [{"type": "input", "shape": [4]}, dense(4, 3, {"type": "SDNN"})],
            r"missing field 'neuron/vThMant'",
        ),
        (
            [
                {"type": "input", "shape": [2, 6, 6]},
                {
                    "type": "conv",
                    "shape": [3, 5, 5],
                    "weight": np.ones((3, 2, 3, 3)),
                    "stride": [1, 1],
                    "padding": [0, 0],
                    "dilation": [1, 1],
                    "groups": 1,
                    "neuron": SDNN,
                },
            ],
            r"layer 1 \(conv\): the file gives shape \[3, 5, 5\], the layer's geometry gives "
            r"\[3, 4, 4\]",
        ),
        ([{"type": "input", "shape": [2, 2, 2]}, dense(8, 3)], r"without a flatten layer"),
        ([{"type": "input", "shape": [4]}, dense(4, 3, None, bias=np.ones(2))], r"bias of shape"),
        (
            [{"type": "input", "shape": [4]}, {**dense(4, 2), "weight": -np.ones((2, 4))}],
            r"layer 1 \(dense\): netx gives them 0 weight bits, outside Lava's 1..8; "
            r"netx would run other weights than the file's",
        ),
    ],
)
def test_malformed_files_are_one_clear_error(tmp_path, layers, message):
    with pytest.raises(StacError, match=message):
        read_netx(write_net(tmp_path / "m.net", layers), PROFILE)


def test_files_that_are_not_netx_are_refused(tmp_path):
    (tmp_path / "a.net").write_text("not hdf5")
    with pytest.raises(StacError, match="is not an HDF5 file"):
        read_netx(tmp_path / "a.net", PROFILE)
    with h5py.File(tmp_path / "b.net", "w") as f:
        f.create_group("node")
    with pytest.raises(StacError, match="no 'layer' group"):
        read_netx(tmp_path / "b.net", PROFILE)
    with h5py.File(tmp_path / "c.net", "w") as f:
        f.create_group("layer/0").create_dataset("type", data=b"input")
        f.create_group("layer/2")
    with pytest.raises(StacError, match=r"layer names must be 0..1"):
        read_netx(tmp_path / "c.net", PROFILE)
    with pytest.raises(StacError, match="does not exist"):
        read_netx(tmp_path / "missing.net", PROFILE)
