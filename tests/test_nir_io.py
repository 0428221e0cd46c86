"""NIR import/export: round trips, split export, and one clear error for every bad input."""

from __future__ import annotations

import json
import re

import h5py
import nir
import numpy as np
import pytest

from stac.cli import main
from stac.errors import StacError
from stac.ir import load, make_graph, save
from stac.ir.nir_io import export_split, read_nir, write_nir
from stac.ir.nodes import RMSNorm, SignedIF
from stac.sim.stepper import Stepper

DT = 1e-4
F = np.float32


def _lif(n: int, **params) -> nir.LIF:
    values = (
        dict(
            tau=np.full(n, 2e-3, F),
            r=np.ones(n, F),
            v_leak=np.zeros(n, F),
            v_threshold=np.full(n, 0.2, F),
            v_reset=np.zeros(n, F),
        )
        | params
    )
    return nir.LIF(**values)


def _nir_graph(weight=None, in_size=4, lif=None, edges=()):
    """Input -> Affine(3 x 4) -> LIF(3) -> Output, with optional changes."""
    w = np.arange(12, dtype=F).reshape(3, 4) / 10 if weight is None else weight
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([in_size])}),
            "fc": nir.Affine(weight=w, bias=np.zeros(3, F)),
            "lif": lif or _lif(3),
            "output": nir.Output(output_type={"output": np.array([3])}),
        },
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output"), *edges],
        type_check=False,
    )


def _write(path, graph):
    nir.write(path, graph)
    return path


def _mixed_graph():
    """Input -> Affine -> SignedIF -> RMSNorm -> Linear -> LIF -> Output (dotted names)."""
    rng = np.random.default_rng(0)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4])}),
        "l0.fc": nir.Affine(weight=rng.normal(size=(6, 4)).astype(F), bias=np.zeros(6, F)),
        "l0.enc": SignedIF(np.ones(6, F)),
        "l0.norm": RMSNorm(np.ones(6, F), 1e-5),
        "l1.fc": nir.Linear(weight=rng.normal(size=(5, 6)).astype(F)),
        "l1.lif": _lif(5),
        "output": nir.Output(output_type={"output": np.array([5])}),
    }
    edges = [
        ("input", "l0.fc"),
        ("l0.fc", "l0.enc"),
        ("l0.enc", "l0.norm"),
        ("l0.norm", "l1.fc"),
        ("l1.fc", "l1.lif"),
        ("l1.lif", "output"),
    ]
    return make_graph(nodes, edges, {"dt": DT})


# ------------------------------------------------------------------------------ bad input


def _edit(path, key, data):
    """Replace one dataset of a written NIR file (what a broken producer could write)."""
    with h5py.File(path, "r+") as f:
        del f[key]
        f.create_dataset(key, data=data)
    return path


def _nested(inner_lif: nir.LIF, extra_edges=()):
    """Input -> Affine -> subgraph 'blk' (Input -> LIF -> Output) -> Output."""
    blk = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([3])}),
            "lif": inner_lif,
            "output": nir.Output(output_type={"output": np.array([3])}),
        },
        edges=[("input", "lif"), ("lif", "output"), *extra_edges],
        type_check=False,
    )
    g = _nir_graph()
    del g.nodes["lif"]
    g.nodes["blk"] = blk
    g.edges = [("input", "fc"), ("fc", "blk"), ("blk", "output")]
    return g


def _nan_weight():
    w = np.ones((3, 4), F)
    w[1, 2] = np.nan
    return _nir_graph(weight=w)


def _conv1d():
    g = _nir_graph()
    g.nodes["fc"] = nir.Conv1d(
        input_shape=4,
        weight=np.ones((1, 1, 1), F),
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=np.zeros(1, F),
    )
    return g


def _dangling():
    g = _nir_graph(edges=[("fc", "spare")])
    g.nodes["spare"] = _lif(3)
    return g


def _conv2d(groups: int):
    """Input (3, 6, 6) -> Conv2d(4 out channels, 3 x 3) -> Output."""
    conv = nir.Conv2d(
        input_shape=(6, 6),
        weight=np.ones((4, 3 // groups, 3, 3), F),
        stride=1,
        padding=0,
        dilation=1,
        groups=groups,
        bias=np.zeros(4, F),
    )
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([3, 6, 6])}),
            "conv": conv,
            "output": nir.Output(output_type={"output": np.array([4, 4, 4])}),
        },
        edges=[("input", "conv"), ("conv", "output")],
        type_check=False,
    )


def _raw(p, data: bytes):
    p.write_bytes(data)
    return p


def _hdf5_not_nir(p):
    with h5py.File(p, "w") as f:
        f.create_dataset("data", data=np.zeros(3))
    return p


#: Every kind of bad file the issue names (and a few more), with the error it must give:
#: (id, make(path) -> path, what the one error line must say).
BAD_FILES = [
    ("not-hdf5", lambda p: _raw(p, b"this is not HDF5"), r"x\.nir: is not an HDF5 file"),
    ("empty", lambda p: _raw(p, b""), r"x\.nir: is not an HDF5 file"),
    ("hdf5-not-nir", _hdf5_not_nir, r"is HDF5 but not NIR"),
    (
        "edge-to-missing-node",
        lambda p: _write(p, _nir_graph(edges=[("lif", "ghost")])),
        r"edge \('lif' -> 'ghost'\) in the top-level graph names missing node 'ghost'",
    ),
    (
        "nested-edge-to-missing-node",
        lambda p: _write(p, _nested(_lif(3), extra_edges=[("lif", "ghost")])),
        r"edge \('lif' -> 'ghost'\) in subgraph 'blk' names missing node 'ghost'",
    ),
    (
        "mismatched-shapes-on-edge",
        lambda p: _write(p, _nir_graph(in_size=5)),
        r"shape mismatch on edge 'input' -> 'fc': input \(Input\) gives \(5,\), fc \(Affine\) "
        r"takes \(4,\)",
    ),
    (
        "mismatched-bias-shape",
        lambda p: _edit(_write(p, _nir_graph()), "node/nodes/fc/bias", np.zeros(5, F)),
        r"node 'fc' \(Affine\): bias has shape \(5,\), but weight \(3, 4\) has 3 outputs",
    ),
    (
        "mismatched-neuron-parameters",
        lambda p: _edit(_write(p, _nir_graph()), "node/nodes/lif/v_threshold", np.ones(4, F)),
        r"node 'lif' \(LIF\) cannot be built: All parameters must have the same shape",
    ),
    (
        "unknown-node-type",
        lambda p: _edit(_write(p, _nir_graph()), "node/nodes/lif/type", b"Quantum"),
        r"node 'lif' has node type 'Quantum', which is not a NIR type stac knows",
    ),
    (
        "nir-type-stac-cannot-run",
        lambda p: _write(p, _conv1d()),
        r"stac cannot import node\(s\) fc \(Conv1d\)",
    ),
    (
        "nan-parameter",
        lambda p: _write(p, _nan_weight()),
        r"node 'fc' \(Affine\): parameter 'weight' has NaN or infinite values",
    ),
    (
        "nan-parameter-nested",
        lambda p: _write(p, _nested(_lif(3, v_threshold=np.array([np.nan, 1, 1], F)))),
        r"node 'blk\.lif' \(LIF\): parameter 'v_threshold' has NaN or infinite values",
    ),
    (
        "zero-time-constant",
        lambda p: _write(p, _nir_graph(lif=_lif(3, tau=np.zeros(3, F)))),
        r"node 'lif' \(LIF\): tau must be > 0",
    ),
    (
        "truncated",
        lambda p: _raw(p, _write(p, _nir_graph()).read_bytes()[:3000]),
        r"x\.nir: cannot be opened \(OSError: .*truncated file",
    ),
    (
        "duplicate-edge",
        lambda p: _write(p, _nir_graph(edges=[("fc", "lif")])),
        r"Duplicate edge: \('fc', 'lif'\)",
    ),
    ("dangling-node", lambda p: _write(p, _dangling()), r"node 'spare' \(LIF\) has no output edge"),
    (
        "conv-groups",
        lambda p: _write(p, _conv2d(groups=3)),
        r"node 'conv' \(Conv2d\): groups=3 does not divide the 4 output channels",
    ),
]


@pytest.mark.parametrize("make,message", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_file_is_one_error_naming_node_and_problem(tmp_path, make, message):
    with pytest.raises(StacError, match=message):
        read_nir(make(tmp_path / "x.nir"), dt=DT)


@pytest.mark.parametrize("command", ["import-nir", "export-nir"])
@pytest.mark.parametrize("make,message", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_file_through_the_cli(tmp_path, capsys, command, make, message):
    """One ``stac: error:`` line, exit status 2, no traceback, and nothing written."""
    bad = make(tmp_path / "x.nir")
    out = tmp_path / "out"
    args = (
        ["import-nir", str(bad), "--steps", "5", "--output-dir", str(out)]
        if command == "import-nir"
        else ["export-nir", str(bad), "--output", str(out)]
    )
    assert main(args) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("stac: error: NIR file") and err.count("\n") == 1, err
    assert re.search(message, err), err
    assert "Traceback" not in err + captured.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nir"]  # no output, no partial


@pytest.mark.parametrize("dt", [0, -1e-4, float("nan")])
def test_bad_dt(tmp_path, dt):
    p = _write(tmp_path / "x.nir", _nir_graph())
    with pytest.raises(StacError, match="dt must be a positive"):
        read_nir(p, dt=dt)


def test_dt_larger_than_a_time_constant_is_refused(tmp_path, capsys):
    """Forward Euler at dt > tau overshoots every step: refused, naming node and constant."""
    p = _write(tmp_path / "x.nir", _nir_graph())  # tau = 2 ms
    read_nir(p, dt=2e-3)  # dt = tau is the limit, still allowed
    out = tmp_path / "out"
    assert (
        main(["import-nir", str(p), "--dt", "5e-3", "--steps", "5", "--output-dir", str(out)]) == 2
    )
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"stac: error: NIR file .*x\.nir: node 'lif' \(LIF\): dt = 0\.005 s "
        r"is larger than its tau = 0\.002 s; forward Euler needs dt <= tau: "
        r"give a smaller --dt\n",
        err,
    ), err
    assert not out.exists()


def test_missing_file(tmp_path):
    with pytest.raises(StacError, match="does not exist"):
        read_nir(tmp_path / "nope.nir", dt=DT)


def test_parameters_that_do_not_fit_fail_before_the_run():
    """The executor steps every node once up front: a node whose parameters do not fit its
    shapes is named before any step runs (here a Flatten over dimensions the input lacks)."""
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 3, 4])}),
        "flat": nir.Flatten(input_type={"input": np.array([2, 3, 4])}, start_dim=5, end_dim=7),
        "output": nir.Output(output_type={"output": np.array([24])}),
    }
    nodes["flat"].output_type = {"output": np.array([24])}
    graph = make_graph(nodes, [("input", "flat"), ("flat", "output")], {"dt": DT})
    with pytest.raises(
        StacError,
        match=r"node 'flat' \(Flatten\) cannot run on its input "
        r"shape \(2, 3, 4\): Dimension out of range",
    ):
        Stepper(graph)


# ------------------------------------------------------------------------------ round trips


def test_nir_round_trip_keeps_parameters_and_dt(tmp_path):
    p1 = _write(tmp_path / "a.nir", _nir_graph())
    g = read_nir(p1, dt=DT)
    assert g.metadata["dt"] == DT and g.nodes["lif"].metadata["reset"] == "zero"
    p2 = tmp_path / "b.nir"
    write_nir(g, p2)
    back = nir.read(p2, type_check=True)
    back.validate_structure()
    np.testing.assert_array_equal(back.nodes["fc"].weight, g.nodes["fc"].weight)
    np.testing.assert_array_equal(back.nodes["lif"].tau, g.nodes["lif"].tau)
    g2 = read_nir(p2, dt=5e-5)
    assert float(back.metadata["dt"]) == DT and g2.metadata["dt"] == 5e-5
    x = np.random.default_rng(0).random((120, 4)).astype(F)
    s1 = Stepper(g).run(x).outputs["output"]
    s2 = Stepper(g2, dt=DT).run(x).outputs["output"]
    assert s1.sum() > 0
    np.testing.assert_array_equal(s1.numpy(), s2.numpy())


def test_stac_ir_round_trip_of_imported_graph(tmp_path):
    g = read_nir(_write(tmp_path / "a.nir", _nir_graph()), dt=DT)
    save(g, tmp_path / "g.stac.json")
    back = load(tmp_path / "g.stac.json")
    assert back.metadata["dt"] == DT and set(back.nodes) == set(g.nodes)
    np.testing.assert_array_equal(back.nodes["fc"].weight, g.nodes["fc"].weight)


def test_export_refuses_stac_only_nodes_and_lists_them(tmp_path):
    out = tmp_path / "m.nir"
    with pytest.raises(StacError, match=r"l0\.enc \(SignedIF\), l0\.norm \(RMSNorm\).*--split"):
        write_nir(_mixed_graph(), out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_export_renames_dotted_nodes(tmp_path):
    g = read_nir(_write(tmp_path / "a.nir", _nir_graph()), dt=DT)
    g.nodes["blk.fc"] = g.nodes.pop("fc")
    g.edges = [(("blk.fc" if s == "fc" else s), ("blk.fc" if d == "fc" else d)) for s, d in g.edges]
    names = write_nir(g, tmp_path / "b.nir")
    assert names["blk.fc"] == "blk_fc"
    assert "blk_fc" in nir.read(tmp_path / "b.nir").nodes


def test_split_export_writes_parts_and_manifest(tmp_path):
    out = tmp_path / "split"
    manifest = export_split(_mixed_graph(), out)
    files = sorted(p.name for p in out.iterdir())
    assert files == [".stac-output", "manifest.json", "part_0.nir", "part_1.nir"]  # + marker
    assert json.loads((out / "manifest.json").read_text()) == manifest
    for part in manifest["parts"]:
        g = nir.read(out / part["file"], type_check=True)
        g.validate_structure()
        assert all("." not in n for n in g.nodes)
    p0, p1 = manifest["parts"]
    assert set(p0["nodes"]) == {"input", "l0.fc"} and p0["outputs"]["out_l0_fc"]["to"] == ["l0.enc"]
    assert set(p1["nodes"]) == {"l1.fc", "l1.lif", "output"}
    assert p1["inputs"]["in_l0_norm"]["from"] == "l0.norm"
    host = manifest["host_ops"]
    assert host["l0.enc"] == {
        "type": "SignedIF",
        "inputs": [{"part": "part_0.nir", "port": "out_l0_fc"}],
        "consumers": [{"host_op": "l0.norm"}],
        "input_shape": [6],
        "output_shape": [6],
        "runs": "per_step",
        "doc": SignedIF.__doc__.strip().splitlines()[0],
    }
    assert host["l0.norm"]["consumers"] == [{"part": "part_1.nir", "port": "in_l0_norm"}]
    assert host["l0.norm"]["runs"] == "per_token"
    assert p0["types"] == ["Affine", "Input"] and p0["neurons"] == []
    assert p1["types"] == ["LIF", "Linear", "Output"] and p1["neurons"] == ["l1.lif"]
    with pytest.raises(StacError, match="exists"):
        export_split(_mixed_graph(), out)


def test_cli_export_nir_from_ir_file(tmp_path, capsys):
    save(_mixed_graph(), tmp_path / "g.stac.json")
    rc = main(["export-nir", str(tmp_path / "g.stac.json"), "--output", str(tmp_path / "g.nir")])
    assert rc == 2 and "NIR cannot express" in capsys.readouterr().err
    assert not (tmp_path / "g.nir").exists()
    rc = main(
        ["export-nir", str(tmp_path / "g.stac.json"), "--output", str(tmp_path / "s"), "--split"]
    )
    assert rc == 0 and (tmp_path / "s" / "manifest.json").is_file()
    # a pure NIR graph exports to one file
    save(read_nir(_write(tmp_path / "a.nir", _nir_graph()), dt=DT), tmp_path / "n.stac.json")
    assert (
        main(["export-nir", str(tmp_path / "n.stac.json"), "--output", str(tmp_path / "n.nir")])
        == 0
    )
    nir.read(tmp_path / "n.nir", type_check=True).validate_structure()


def test_import_nir_cli_zero_input_note(tmp_path):
    p = _write(tmp_path / "a.nir", _nir_graph())
    out = tmp_path / "r"
    assert main(["import-nir", str(p), "--steps", "10", "--output-dir", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert "zeros" in report["input"] and report["timesteps"] == 10
    assert main(["import-nir", str(p), "--steps", "10", "--output-dir", str(out)]) == 2


# --- issue 16: reset provenance, export shapes, nested edges, stateless cycles, sizes -------


def test_round_trip_does_not_stamp_a_reset_the_file_never_said(tmp_path, capsys):
    """A file that says no reset: stac fills one in to run it, but the export leaves it out,
    so a re-import with --reset subtract runs subtract (it used to get 'zero' silently)."""
    src = _write(tmp_path / "a.nir", _nir_graph())
    graph = read_nir(src, dt=DT)
    assert graph.nodes["lif"].metadata == {"reset": "zero", "reset_origin": "default"}
    write_nir(graph, tmp_path / "b.nir")
    assert "reset" not in (nir.read(tmp_path / "b.nir").nodes["lif"].metadata or {})
    back = read_nir(tmp_path / "b.nir", dt=DT, reset="subtract")
    assert back.nodes["lif"].metadata == {"reset": "subtract", "reset_origin": "option"}
    out = tmp_path / "r"
    argv = ["import-nir", str(tmp_path / "b.nir"), "--steps", "3", "--reset", "subtract"]
    assert main([*argv, "--output-dir", str(out)]) == 0
    assert "reset: subtract (--reset) on lif" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["reset_origins"] == {"lif": "option"}


def test_a_reset_the_file_says_wins_and_the_run_says_so(tmp_path, capsys):
    lif = _lif(3)
    lif.metadata = {"reset": "zero"}
    src = _write(tmp_path / "a.nir", _nir_graph(lif=lif))
    graph = read_nir(src, dt=DT, reset="subtract")
    assert graph.nodes["lif"].metadata == {"reset": "zero", "reset_origin": "file"}
    write_nir(graph, tmp_path / "b.nir")  # the source said it: the export keeps it
    assert nir.read(tmp_path / "b.nir").nodes["lif"].metadata == {"reset": "zero"}
    argv = ["import-nir", str(src), "--steps", "3", "--reset", "subtract"]
    assert main([*argv, "--output-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "reset: zero (the file's own) on lif" in out
    assert "--reset subtract applies only to neurons whose file does not say" in out


def test_reset_choice_changes_spikes(tmp_path):
    """The two rules give different spikes on this graph (a strong drive overshoots the
    threshold), so the provenance tests above test a choice that matters."""
    src = _write(tmp_path / "c.nir", _nir_graph())
    x = np.full((40, 4), 3.0, F)
    zero, sub = (
        Stepper(read_nir(src, dt=DT, reset=r)).run(x).outputs["output"].numpy()
        for r in ("zero", "subtract")
    )
    assert zero.sum() > 0 and not np.array_equal(zero, sub)


def test_lif_rockpool_exports_and_runs_the_same(tmp_path):
    """The NIR paper's lif_rockpool.nir declares its Output (1, 1, 1) for a 1-neuron LIF:
    stac accepts it (equal sizes) and the export now gives the Output its producer's shape,
    so NIR's type check passes; the re-imported graph spikes the same."""
    from paths import NIR_PAPER

    src = NIR_PAPER / "01_lif" / "lif_rockpool.nir"
    graph = read_nir(src, dt=DT)
    write_nir(graph, tmp_path / "r.nir")
    back = nir.read(tmp_path / "r.nir", type_check=True)
    assert back.nodes["output"].output_type["output"].tolist() == [1]
    x = np.loadtxt(NIR_PAPER / "01_lif" / "lif_exact.csv", delimiter=",")[:, :1] * 50
    ours = Stepper(graph).run(x).traces["1_LIFNeuronTorch"].numpy()
    again = Stepper(read_nir(tmp_path / "r.nir", dt=DT)).run(x).traces["1_LIFNeuronTorch"]
    assert ours.sum() > 0
    np.testing.assert_array_equal(ours, again.numpy())


def test_export_refuses_a_reshaping_edge_with_stacs_own_message(tmp_path):
    """An edge that joins equal sizes in different shapes inside the graph (not at an
    Output) cannot be written as NIR: refused naming the edge, not with NIR's type text."""
    g = _nir_graph()
    g.nodes["lif"] = nir.LIF(
        **{
            k: np.asarray(v).reshape(3, 1)
            for k, v in vars(_lif(3)).items()
            if k in ("tau", "r", "v_leak", "v_threshold", "v_reset")
        }
    )
    g.nodes["output"] = nir.Output(output_type={"output": np.array([3, 1])})
    graph = read_nir(_write(tmp_path / "a.nir", g), dt=DT)
    with pytest.raises(
        StacError,
        match=r"cannot export to NIR: edge 'fc' -> 'lif' joins "
        r"Affine output \(3,\) to LIF input \(3, 1\), the same size",
    ):
        write_nir(graph, tmp_path / "b.nir")
    assert not (tmp_path / "b.nir").exists()


def test_cycle_without_a_neuron_is_refused_naming_it(tmp_path):
    g = _nir_graph(edges=[("fc", "loop"), ("loop", "fc")])
    g.nodes["loop"] = nir.Affine(weight=np.eye(4, 3, dtype=F), bias=np.zeros(4, F))
    with pytest.raises(StacError, match=r"cycle fc -> loop -> fc has no neuron on it"):
        read_nir(_write(tmp_path / "a.nir", g), dt=DT)


def test_cycle_through_a_neuron_is_accepted(tmp_path):
    g = _nir_graph(edges=[("lif", "rec"), ("rec", "lif")])
    g.nodes["rec"] = nir.Affine(weight=np.eye(3, dtype=F), bias=np.ones(3, F))
    graph = read_nir(_write(tmp_path / "a.nir", g), dt=DT)
    assert graph.metadata["recurrent_weights"] == ["rec"]


def _declared_input(p, shape):
    _write(p, _nir_graph())
    with h5py.File(p, "r+") as f:
        del f["node/nodes/input/shape"]
        f["node/nodes/input/shape"] = np.array(shape, np.int64)
    return p


def _huge_weight(p):
    _write(p, _nir_graph())
    with h5py.File(p, "r+") as f:
        del f["node/nodes/fc/weight"]
        f.create_dataset("node/nodes/fc/weight", shape=(60000, 60000), dtype=F)  # unwritten
    return p


@pytest.mark.parametrize(
    "make,message",
    [
        (
            lambda p: _declared_input(p, [100000, 100000]),
            r"node 'input' shape \(100000, 100000\) declares 10,000,000,000 elements \(37\.3 GiB\)",
        ),
        (
            _huge_weight,
            r"node 'fc' field 'weight' \(60000, 60000\) declares 3,600,000,000 elements "
            r"\(13\.4 GiB\)",
        ),
    ],
    ids=["input-1e5x1e5", "weight-60000x60000"],
)
def test_declared_sizes_over_the_budget_are_refused_before_reading(
    tmp_path, monkeypatch, make, message
):
    import stac.ir.nir_io.size as size

    monkeypatch.setattr(size, "memory_budget", lambda: 8 << 30)  # a fixed 8 GiB machine
    bad = make(tmp_path / "x.nir")
    assert bad.stat().st_size < 1 << 20  # the file is small; reading it would not be
    with pytest.raises(StacError, match=message + r", more than the memory budget of 8\.0 GiB"):
        read_nir(bad, dt=DT)
