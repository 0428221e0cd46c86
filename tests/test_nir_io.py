"""NIR import/export: round trips, split export, and one clear error for every bad input."""

from __future__ import annotations

import json

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


def _lif(n: int) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 2e-3, F), r=np.ones(n, F), v_leak=np.zeros(n, F),
                   v_threshold=np.full(n, 0.2, F), v_reset=np.zeros(n, F))


def _nir_graph(weight=None, in_size=4):
    w = np.arange(12, dtype=F).reshape(3, 4) / 10 if weight is None else weight
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([in_size])}),
               "fc": nir.Affine(weight=w, bias=np.zeros(3, F)),
               "lif": _lif(3),
               "output": nir.Output(output_type={"output": np.array([3])})},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)


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
    edges = [("input", "l0.fc"), ("l0.fc", "l0.enc"), ("l0.enc", "l0.norm"),
             ("l0.norm", "l1.fc"), ("l1.fc", "l1.lif"), ("l1.lif", "output")]
    return make_graph(nodes, edges, {"dt": DT})


# ------------------------------------------------------------------------------ bad input


def test_not_hdf5(tmp_path):
    p = tmp_path / "x.nir"
    p.write_text("this is not HDF5")
    with pytest.raises(StacError, match=r"x\.nir: is not an HDF5 file"):
        read_nir(p, dt=DT)


def test_hdf5_but_not_nir(tmp_path):
    p = tmp_path / "x.nir"
    with h5py.File(p, "w") as f:
        f.create_dataset("data", data=np.zeros(3))
    with pytest.raises(StacError, match="not NIR"):
        read_nir(p, dt=DT)


def test_missing_file(tmp_path):
    with pytest.raises(StacError, match="does not exist"):
        read_nir(tmp_path / "nope.nir", dt=DT)


def test_edge_to_missing_node(tmp_path):
    g = _nir_graph()
    g.edges.append(("lif", "ghost"))
    with pytest.raises(StacError, match="'ghost'"):
        read_nir(_write(tmp_path / "x.nir", g), dt=DT)


def test_mismatched_shapes(tmp_path):
    p = _write(tmp_path / "x.nir", _nir_graph(in_size=5))
    with pytest.raises(StacError, match=r"shape mismatch on edge 'input' -> 'fc'"):
        read_nir(p, dt=DT)


def test_unknown_node_type(tmp_path):
    p = _write(tmp_path / "x.nir", _nir_graph())
    with h5py.File(p, "r+") as f:
        del f["node/nodes/lif/type"]
        f["node/nodes/lif"].create_dataset("type", data=b"Quantum")
    with pytest.raises(StacError, match=r"node 'lif' has node type 'Quantum', which is not a NIR type"):
        read_nir(p, dt=DT)


def test_known_nir_type_stac_cannot_run(tmp_path):
    g = _nir_graph()
    g.nodes["fc"] = nir.Conv1d(input_shape=4, weight=np.ones((1, 1, 1), F), stride=1,
                               padding=0, dilation=1, groups=1, bias=np.zeros(1, F))
    p = _write(tmp_path / "x.nir", g)
    with pytest.raises(StacError, match=r"cannot import node\(s\) fc \(Conv1d\)"):
        read_nir(p, dt=DT)


def test_nan_parameter(tmp_path):
    w = np.ones((3, 4), F)
    w[1, 2] = np.nan
    p = _write(tmp_path / "x.nir", _nir_graph(weight=w))
    with pytest.raises(StacError, match=r"node 'fc' \(Affine\): parameter 'weight' has NaN"):
        read_nir(p, dt=DT)


@pytest.mark.parametrize("dt", [0, -1e-4, float("nan")])
def test_bad_dt(tmp_path, dt):
    p = _write(tmp_path / "x.nir", _nir_graph())
    with pytest.raises(StacError, match="dt must be a positive"):
        read_nir(p, dt=dt)


def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    p = tmp_path / "x.nir"
    p.write_bytes(b"\x00garbage")
    out = tmp_path / "out"
    assert main(["import-nir", str(p), "--steps", "5", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HDF5" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


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
    g.edges = [(("blk.fc" if s == "fc" else s), ("blk.fc" if d == "fc" else d))
               for s, d in g.edges]
    names = write_nir(g, tmp_path / "b.nir")
    assert names["blk.fc"] == "blk_fc"
    assert "blk_fc" in nir.read(tmp_path / "b.nir").nodes


def test_split_export_writes_parts_and_manifest(tmp_path):
    out = tmp_path / "split"
    manifest = export_split(_mixed_graph(), out)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["manifest.json", "part_0.nir", "part_1.nir"]
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
    assert host["l0.enc"] == {"type": "SignedIF",
                              "inputs": [{"part": "part_0.nir", "port": "out_l0_fc"}],
                              "consumers": [{"host_op": "l0.norm"}],
                              "input_shape": [6], "output_shape": [6]}
    assert host["l0.norm"]["consumers"] == [{"part": "part_1.nir", "port": "in_l0_norm"}]
    with pytest.raises(StacError, match="exists"):
        export_split(_mixed_graph(), out)


def test_cli_export_nir_from_ir_file(tmp_path, capsys):
    save(_mixed_graph(), tmp_path / "g.stac.json")
    rc = main(["export-nir", str(tmp_path / "g.stac.json"), "--output", str(tmp_path / "g.nir")])
    assert rc == 2 and "NIR cannot express" in capsys.readouterr().err
    assert not (tmp_path / "g.nir").exists()
    rc = main(["export-nir", str(tmp_path / "g.stac.json"), "--output", str(tmp_path / "s"),
               "--split"])
    assert rc == 0 and (tmp_path / "s" / "manifest.json").is_file()
    # a pure NIR graph exports to one file
    save(read_nir(_write(tmp_path / "a.nir", _nir_graph()), dt=DT), tmp_path / "n.stac.json")
    assert main(["export-nir", str(tmp_path / "n.stac.json"), "--output",
                 str(tmp_path / "n.nir")]) == 0
    nir.read(tmp_path / "n.nir", type_check=True).validate_structure()


def test_import_nir_cli_zero_input_note(tmp_path):
    p = _write(tmp_path / "a.nir", _nir_graph())
    out = tmp_path / "r"
    assert main(["import-nir", str(p), "--steps", "10", "--output-dir", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert "zeros" in report["input"] and report["timesteps"] == 10
    assert main(["import-nir", str(p), "--steps", "10", "--output-dir", str(out)]) == 2
