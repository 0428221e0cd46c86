"""IR nodes check themselves; the verifier catches broken graphs; files round-trip exactly."""

import json
import shutil
from pathlib import Path

import nir
import numpy as np
import pytest

from stac.ir import IRFormatError, VerifyError, load, make_graph, save, verify
from stac.ir.nodes import (
    Activation,
    AdEx,
    CausalSelfAttention,
    Embedding,
    GatedActivation,
    LayerNorm,
    LoihiCubaLIF,
    Readout,
    Rotation,
    Residual,
    RMSNorm,
    SigmaDelta,
    SignedIF,
    stac_node_types,
)
from stac.ir.passes import run_passes
from stac.ir.results import (
    Issue,
    NodePlacement,
    Partition,
    Placement,
    issues_of,
    legality_of,
    node_placement,
    partition_of,
    placement_of,
)
from stac.ir.serialize import node_fields
from stac.profiles import load_profile

rng = np.random.default_rng(0)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


EXAMPLES = {
    "SignedIF": SignedIF(np.abs(f32(6)) + 0.1, token_gain=True, gain_ratio=0.9, gain_floor=0.0),
    "Rotation": Rotation.random(6, rng),
    "Readout": Readout(np.abs(f32(6)) + 0.1, 24, metadata={"shift": 3}),
    "RMSNorm": RMSNorm(f32(6), 1e-5),
    "LayerNorm": LayerNorm(f32(6), f32(6), 1e-5),
    "Activation": Activation(6, "gelu_tanh"),
    "GatedActivation": GatedActivation(3, "silu"),
    "Residual": Residual(6),
    "CausalSelfAttention": CausalSelfAttention(4, 2, 8, 0.35, 10000.0),
    "Embedding": Embedding(f32(10, 6), "position"),
    "SigmaDelta": SigmaDelta(np.arange(-2, 4, dtype=np.int64), vth=3, spike_exp=6, state_exp=6),
    "LoihiCubaLIF": LoihiCubaLIF(
        np.arange(6, dtype=np.int64), i_decay=1024, v_decay=128, vth=80, bias_exp=6
    ),
    "AdEx": AdEx(
        **{
            k: np.full(6, v)
            for k, v in dict(
                tau_m=10.0,
                tau_w=50.0,
                a=0.1,
                b=0.2,
                delta_t=0.2,
                v_th=1.0,
                v_reset=0.0,
                v_rest=0.0,
                r=1.0,
                v_peak=2.0,
            ).items()
        }
    ),
}


def test_every_stac_node_type_has_a_round_trip_example():
    assert set(EXAMPLES) == set(stac_node_types())


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_round_trip_field_by_field(tmp_path, name):
    node = EXAMPLES[name]
    shape = node.input_shape[0]
    graph = make_graph(
        {
            "in": nir.Input(np.array([shape])),
            "n": node,
            "out": nir.Output(np.array(node.output_shape)),
        },
        [("in", "n"), ("n", "out")],
        {"note": "x", "nested": {"a": np.arange(3)}},
    )
    save(graph, tmp_path / "g.json")
    back = load(tmp_path / "g.json")
    assert type(back.nodes["n"]) is type(node)
    for key, value in node_fields(node).items():
        got = node_fields(back.nodes["n"])[key]
        if isinstance(value, np.ndarray):
            assert got.dtype == value.dtype and np.array_equal(got, value)
        else:
            assert got == value
    assert back.edges == graph.edges
    assert np.array_equal(back.metadata["nested"]["a"], np.arange(3))


def test_shared_arrays_are_stored_once(tmp_path):
    table = f32(10, 4)
    graph = make_graph(
        {
            "in": nir.Input(np.array([1])),
            "emb": Embedding(table),
            "if": SignedIF(np.ones(4, np.float32)),
            "head": nir.Linear(table),
            "out": nir.Output(np.array([10])),
        },
        [("in", "emb"), ("emb", "if"), ("if", "head"), ("head", "out")],
    )
    _, tensors = save(graph, tmp_path / "g.json")
    from safetensors.numpy import load_file

    # The table is stored once (under the embedding); the head refers to it.
    assert set(load_file(str(tensors))) == {"in.shape", "out.shape", "emb.weight", "if.threshold"}
    back = load(tmp_path / "g.json")
    assert back.nodes["emb"].weight is back.nodes["head"].weight


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SignedIF(np.array([1.0, 0.0], np.float32)), "threshold must be > 0"),
        (lambda: SignedIF(np.ones((2, 2), np.float32)), "must have 1 dimension"),
        (lambda: RMSNorm(np.array([np.nan], np.float32), 1e-5), "NaN"),
        (lambda: LayerNorm(f32(3), f32(4), 1e-5), "differ in shape"),
        (lambda: Activation(4, "tanh"), "is not one of"),
        (lambda: CausalSelfAttention(9, 2, 64, 0.1), "multiple of num_kv_heads"),
        (lambda: Embedding(f32(4, 2), "segment"), "is not one of"),
    ],
)
def test_nodes_reject_bad_parameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def _chain(**extra_edges):
    nodes = {
        "in": nir.Input(np.array([4])),
        "if": SignedIF(np.ones(4, np.float32)),
        "lin": nir.Linear(f32(3, 4)),
        "out": nir.Output(np.array([3])),
    }
    return nodes, [("in", "if"), ("if", "lin"), ("lin", "out")]


def test_verifier_accepts_a_good_graph():
    nodes, edges = _chain()
    verify(make_graph(nodes, edges))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda n, e: e.append(("lin", "ghost")), "missing node 'ghost'"),
        (lambda n, e: e.append(("if", "lin")), "duplicate edge"),
        (
            lambda n, e: n.__setitem__("lin", nir.Linear(f32(3, 5))),
            "shape mismatch on edge 'if' -> 'lin'",
        ),
        (lambda n, e: e.append(("lin", "if")), "cycle"),
        (
            lambda n, e: n.__setitem__("lin", nir.Linear(np.full((3, 4), np.nan, np.float32))),
            "'lin'.*NaN",
        ),
    ],
)
def test_verifier_names_the_problem(mutate, message):
    nodes, edges = _chain()
    mutate(nodes, edges)
    with pytest.raises(VerifyError, match=message):
        verify(make_graph(nodes, edges))


def test_loading_rejects_other_formats_and_versions(tmp_path):
    (tmp_path / "a.json").write_text('{"format": "something-else"}')
    with pytest.raises(IRFormatError, match="not a stac IR file"):
        load(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"format": "stac-ir", "version": 99}')
    with pytest.raises(IRFormatError, match="version 99"):
        load(tmp_path / "b.json")
    (tmp_path / "c.json").write_bytes(b"\x89HDF\r\n")
    with pytest.raises(IRFormatError, match="not a readable"):
        load(tmp_path / "c.json")


# --- the passes' typed results in the IR file ----------------------------------------------

BEFORE_TYPED = Path(__file__).parent / "data" / "ir_before_typed_results" / "model.stac.json"


def _placed_graph():
    """The graph of ``tests/data/ir_before_typed_results`` (written by stac before the passes'
    results were typed), fitted to loihi2 by today's passes."""
    nodes = {
        "input": nir.Input(np.array([3])),
        "norm": RMSNorm(weight=np.ones(3, np.float32), eps=1e-6),
        "enc": SignedIF(threshold=np.ones(3, np.float32)),
        "lin": nir.Linear(weight=np.arange(6, dtype=np.float32).reshape(2, 3)),
        "output": nir.Output(np.array([2])),
    }
    edges = [("input", "norm"), ("norm", "enc"), ("enc", "lin"), ("lin", "output")]
    return run_passes(make_graph(nodes, edges, {}), load_profile("loihi2"))


def test_a_file_written_before_the_results_were_typed_loads_into_them():
    g = load(BEFORE_TYPED)
    part, legal = partition_of(g), legality_of(g)
    assert isinstance(part, Partition) and isinstance(placement_of(g), Placement)
    assert (part.profile, part.cores, part.chips, part.neurons, part.synapses) == (
        "loihi2",
        2,
        1,
        5,
        6,
    )
    assert part.utilisation.cores == 2 / 128
    enc = node_placement(g.nodes["enc"])
    assert isinstance(enc, NodePlacement) and enc.on_chip and not enc.synaptic
    assert enc.blocks.tolist() == [[0, 3, 0, 0, 3, 0, 0, 3, 3]]
    assert (enc.fanout_cores, enc.dest_cores_per_spike, enc.chips_spanned) == (1, 1.0, 1)
    assert node_placement(g.nodes["lin"]).col_blocks == 1
    assert node_placement(g.nodes["norm"]).to_dict() == {"unit": "host"}
    assert (legal.errors, legal.warnings, legal.notes) == (0, 0, 3)
    assert isinstance(legal.issues[0], Issue)
    assert legal.issues[1].message == "3 node(s) run on the host (RMSNorm)"
    assert [i.limit for i in issues_of(g)["partition"]] == ["chip.axons_out_per_core", "ops"]


def test_pass_results_round_trip_in_the_layout_files_already_have(tmp_path):
    graph = _placed_graph()
    path, _ = save(graph, tmp_path / "g.stac.json")
    expected = json.loads(BEFORE_TYPED.read_text())["metadata"]
    # That file also holds a fan-out note that did not bind ("limits a core to 4096 of its 3
    # channels"); the partition writes the note only when the fan-out splits a layer now.
    meta = expected["__dict__"]
    issues, legal = meta["issues"]["__dict__"], meta["legality"]["__dict__"]
    for where in (issues["partition"], legal["issues"]):
        where[:] = [i for i in where if i["limit"] != "chip.axons_out_per_core"]
    legal["notes"] -= 1
    assert json.loads(path.read_text())["metadata"] == expected
    back = load(path)
    for get in (partition_of, placement_of, legality_of, issues_of):
        want, got = get(graph), get(back)
        assert type(got) is type(want)
        if isinstance(want, Placement):
            assert np.array_equal(got.core_slots, want.core_slots)
            assert got.traffic == want.traffic and got.chip_grid == want.chip_grid
        else:
            assert got == want
    for name, node in graph.nodes.items():
        want, got = node_placement(node), node_placement(back.nodes[name])
        for key, value in want.to_dict().items():
            if isinstance(value, np.ndarray):
                assert got.blocks.dtype == value.dtype and np.array_equal(got.blocks, value)
            else:
                assert getattr(got, key) == value, f"{name}.{key}"


def test_a_malformed_pass_result_is_refused_naming_it(tmp_path):
    doc = json.loads(BEFORE_TYPED.read_text())
    doc["metadata"]["__dict__"]["partition"]["__dict__"]["warp"] = 1
    # the tensors file beside the IR file (a path elsewhere is refused)
    shutil.copy(BEFORE_TYPED.with_suffix(".safetensors"), tmp_path / "g.safetensors")
    doc["tensors"] = "g.safetensors"
    (tmp_path / "g.json").write_text(json.dumps(doc))
    with pytest.raises(
        IRFormatError,
        match=r"malformed pass result .*Partition: unknown field\(s\) "
        r"\['warp'\]",
    ):
        load(tmp_path / "g.json")
