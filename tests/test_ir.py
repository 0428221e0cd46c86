"""IR nodes check themselves; the verifier catches broken graphs; files round-trip exactly."""

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
    Residual,
    RMSNorm,
    SignedIF,
    stac_node_types,
)
from stac.ir.serialize import node_fields

rng = np.random.default_rng(0)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


EXAMPLES = {
    "SignedIF": SignedIF(np.abs(f32(6)) + 0.1),
    "RMSNorm": RMSNorm(f32(6), 1e-5),
    "LayerNorm": LayerNorm(f32(6), f32(6), 1e-5),
    "Activation": Activation(6, "gelu_tanh"),
    "GatedActivation": GatedActivation(3, "silu"),
    "Residual": Residual(6),
    "CausalSelfAttention": CausalSelfAttention(4, 2, 8, 0.35, 10000.0),
    "Embedding": Embedding(f32(10, 6), "position"),
    "AdEx": AdEx(**{k: np.full(6, v) for k, v in dict(
        tau_m=10.0, tau_w=50.0, a=0.1, b=0.2, delta_t=0.2, v_th=1.0, v_reset=0.0, v_rest=0.0,
        r=1.0, v_peak=2.0).items()}),
}


def test_every_stac_node_type_has_a_round_trip_example():
    assert set(EXAMPLES) == set(stac_node_types())


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_round_trip_field_by_field(tmp_path, name):
    node = EXAMPLES[name]
    shape = node.input_shape[0]
    graph = make_graph(
        {"in": nir.Input(np.array([shape])), "n": node, "out": nir.Output(np.array(node.output_shape))},
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
        {"in": nir.Input(np.array([1])), "emb": Embedding(table), "if": SignedIF(np.ones(4, np.float32)),
         "head": nir.Linear(table), "out": nir.Output(np.array([10]))},
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
    nodes = {"in": nir.Input(np.array([4])), "if": SignedIF(np.ones(4, np.float32)),
             "lin": nir.Linear(f32(3, 4)), "out": nir.Output(np.array([3]))}
    return nodes, [("in", "if"), ("if", "lin"), ("lin", "out")]


def test_verifier_accepts_a_good_graph():
    nodes, edges = _chain()
    verify(make_graph(nodes, edges))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda n, e: e.append(("lin", "ghost")), "missing node 'ghost'"),
        (lambda n, e: e.append(("if", "lin")), "duplicate edge"),
        (lambda n, e: n.__setitem__("lin", nir.Linear(f32(3, 5))), "shape mismatch on edge 'if' -> 'lin'"),
        (lambda n, e: e.append(("lin", "if")), "cycle"),
        (lambda n, e: n.__setitem__("lin", nir.Linear(np.full((3, 4), np.nan, np.float32))), "'lin'.*NaN"),
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
