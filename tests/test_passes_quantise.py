"""The quantise pass (Before / Expected graphs) and property tests of the quantisers."""

import nir
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from stac.ir import make_graph
from stac.ir.nodes import RMSNorm, SignedIF
from stac.ir.passes import quantise
from stac.ir.results import issues_of
from stac.profiles import PROFILE_DIR, load_profile, load_profile_file
from stac.quant import (
    accumulator_shift,
    dequantise,
    error_stats,
    mantissa_exponent,
    quantise_uniform,
    quantise_weight,
)


def _graph(w, theta, bias=None, quant=None):
    out_f, in_f = w.shape
    fc = nir.Linear(w) if bias is None else nir.Affine(w, bias)
    if quant is not None:
        fc.metadata = {"quant": quant}
    nodes = {
        "in": nir.Input(np.array([in_f])),
        "norm": RMSNorm(np.ones(in_f, np.float32), 1e-5),
        "enc": SignedIF(theta),
        "fc": fc,
        "out": nir.Output(np.array([out_f])),
    }
    return make_graph(nodes, [("in", "norm"), ("norm", "enc"), ("enc", "fc"), ("fc", "out")])


def _random(out_f=12, in_f=20, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(out_f, in_f)).astype(np.float32)
    theta = np.exp(rng.normal(size=in_f)).astype(np.float32)
    return w, theta


def test_quantise_before_expected_on_a_graded_chip():
    """loihi2: weights per row to 8 bits; the host-driven encoder's thresholds on a 15-bit grid
    (its drive must fit the 16-bit input register)."""
    w, theta = _random()
    before = _graph(w, theta)
    after = quantise(before, load_profile("loihi2"))
    q, scale = quantise_weight(w, 8)
    np.testing.assert_array_equal(after.nodes["fc"].weight, dequantise(q, scale))
    unit = theta.max() / (2**15 - 1)
    expected_theta = np.maximum(np.rint(theta / unit), 1) * unit
    np.testing.assert_allclose(after.nodes["enc"].threshold, expected_theta, rtol=1e-6)
    meta = after.nodes["fc"].metadata["quant"]
    assert meta["bits"] == 8 and meta["scheme"] == "per-channel"
    np.testing.assert_array_equal(meta["scale"], scale)
    layer = after.metadata["quantise"]["layers"]["fc"]
    assert layer["status"] == "quantised"
    assert layer["rel_rms"] == pytest.approx(error_stats(w, dequantise(q, scale))["rel_rms"])
    assert 0 < layer["rel_rms"] < 0.02
    # untouched: host nodes, the input graph, the edges
    assert after.nodes["norm"] is before.nodes["norm"] and after.edges == before.edges
    np.testing.assert_array_equal(before.nodes["fc"].weight, w)
    assert "quant" not in before.nodes["fc"].metadata


def test_binary_spike_chips_quantise_the_folded_synapses():
    """loihi1: the spike value theta cannot ride on a binary spike, so W diag(theta) must fit
    8 bits; the stored weight is that quantised matrix divided back by theta."""
    w, theta = _random(seed=1)
    after = quantise(_graph(w, theta), load_profile("loihi1"))
    theta_q = after.nodes["enc"].threshold.astype(np.float32)
    q, scale = quantise_weight(w * theta_q[None, :], 8)
    np.testing.assert_allclose(
        after.nodes["fc"].weight, dequantise(q, scale) / theta_q[None, :], rtol=1e-5
    )
    assert after.metadata["quantise"]["layers"]["fc"]["folded_spike_values"] is True
    assert any(i.node == "fc" and i.limit == "spikes.graded" for i in issues_of(after)["quantise"])


def test_a_full_mode_node_is_carried_when_it_fits_and_requantised_when_not():
    w, theta = _random(seed=2)
    q, scale = quantise_weight(w, 8)
    wq = dequantise(q, scale)
    quant = {"bits": 8, "scheme": "per-channel", "scale": scale}
    before = _graph(wq, theta, quant=quant)
    carried = quantise(before, load_profile("loihi2"))
    assert carried.nodes["fc"].weight is before.nodes["fc"].weight
    assert carried.metadata["quantise"]["layers"]["fc"]["status"] == "carried"
    # truenorth holds 2-bit (ternary) synapses: the 8-bit node does not fit
    ternary = quantise(before, load_profile("truenorth"))
    layer = ternary.metadata["quantise"]["layers"]["fc"]
    assert layer["status"] == "requantised" and layer["bits"] == 2
    assert (
        np.unique(
            np.rint(
                ternary.nodes["fc"].weight
                * theta_q(ternary)[None, :]
                / ternary.nodes["fc"].metadata["quant"]["scale"][:, None]
            )
        ).size
        <= 3
    )


def theta_q(graph):
    return graph.nodes["enc"].threshold.astype(np.float64)


def test_affine_bias_goes_to_the_bias_format_and_weight_exp_is_recorded():
    w, theta = _random(out_f=4, in_f=4096, seed=3)
    bias = np.array([0.0, 1e-3, 5.0, -1e6], np.float32)
    after = quantise(_graph(w, theta, bias=bias), load_profile("loihi2"))
    layer = after.metadata["quantise"]["layers"]["fc"]
    q, scale = quantise_weight(w, 8)
    shift = accumulator_shift(q, 16)
    assert shift > 0 and layer["accumulator_shift"] == shift and layer["weight_exp"] == -shift
    assert layer["bias_saturated"] == 1  # -1e6 / scale needs more than 4095 x 2^7
    mant, exp, _ = mantissa_exponent(bias[:3] / scale[:3], 13, 3)
    np.testing.assert_allclose(after.nodes["fc"].bias[:3], mant * 2.0**exp * scale[:3], rtol=1e-6)


def test_neuron_decays_go_to_the_decay_grid_and_a_chip_without_decay_refuses_them(tmp_path):
    lif = nir.LIF(
        tau=np.array([0.02, 0.0033]),
        r=np.ones(2),
        v_leak=np.zeros(2),
        v_threshold=np.array([1.0, 0.5]),
    )
    nodes = {
        "in": nir.Input(np.array([2])),
        "enc": SignedIF(np.ones(2, np.float32)),
        "fc": nir.Linear(np.eye(2, dtype=np.float32)),
        "lif": lif,
        "out": nir.Output(np.array([2])),
    }
    g = make_graph(
        nodes, [("in", "enc"), ("enc", "fc"), ("fc", "lif"), ("lif", "out")], {"dt": 1e-3}
    )
    after = quantise(g, load_profile("loihi2"))
    decay = 1e-3 / after.nodes["lif"].tau
    np.testing.assert_allclose(decay * 4096, np.rint(1e-3 / lif.tau * 4096))
    assert after.nodes["lif"].v_threshold[1] == pytest.approx(0.5, rel=1e-4)
    no_decay = tmp_path / "no-decay.toml"  # loihi2 with TrueNorth's linear-only leak
    no_decay.write_text(
        (PROFILE_DIR / "loihi2.toml")
        .read_text()
        .replace("decay_bits = { value = 12", "decay_bits = { value = 0")
    )
    tn = quantise(g, load_profile_file(no_decay))
    errors = [i for i in issues_of(tn)["quantise"] if i.level == "error"]
    assert errors and errors[0].node == "lif" and errors[0].limit == "fixed_point.decay_bits"


def test_a_wide_threshold_spread_is_warned_about():
    w, _ = _random(out_f=3, in_f=4)
    theta = np.array([1e-4, 1.0, 2.0, 3.0], np.float32)
    after = quantise(_graph(w, theta), load_profile("loihi2"))
    warn = [i for i in issues_of(after)["quantise"] if i.level == "warning"]
    assert [(i.node, i.limit) for i in warn] == [("enc", "fixed_point.threshold_bits")]
    assert after.metadata["quantise"]["layers"]["enc"]["threshold_levels_min"] == 1


# -- properties of the quantisers ------------------------------------------------------------

_weights = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
    # zero or normal magnitudes: a row peak below ~1e-36 gives a float32
    # scale that underflows (a known limit of quantise_weight, not tested)
    elements=st.one_of(
        st.just(0.0), st.floats(2.0**-66, 1e3, width=32), st.floats(-1e3, -(2.0**-66), width=32)
    ),
)


@settings(max_examples=150, deadline=None)
@given(w=_weights, bits=st.integers(2, 16), per_channel=st.booleans())
def test_quantise_weight_properties(w, bits, per_channel):
    q, scale = quantise_weight(w, bits, per_channel)
    qmax = 2 ** (bits - 1) - 1
    assert q.shape == w.shape and scale.shape == (w.shape[0],) and np.all(scale > 0)
    assert np.abs(q).max() <= qmax
    wq = dequantise(q, scale).astype(np.float64)
    # round to nearest: no element further than half a step from its value
    assert np.all(np.abs(wq - w) <= scale.astype(np.float64)[:, None] * 0.5 * (1 + 1e-5) + 1e-30)
    # the largest magnitude of each row (or of the tensor) takes the largest integer
    if per_channel:
        nz = np.abs(w).max(axis=1) > 0
        assert np.all(np.abs(q[nz]).max(axis=1) == qmax)
    elif np.abs(w).max() > 0:
        assert np.abs(q).max() == qmax
    # idempotent: quantising the quantised weight gives it back
    q2, scale2 = quantise_weight(dequantise(q, scale), bits, per_channel)
    np.testing.assert_array_equal(q2, q)


@settings(max_examples=100, deadline=None)
@given(
    v=hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(0, 1e6)),
    bits=st.integers(2, 24),
)
def test_quantise_uniform_properties(v, bits):
    q, unit = quantise_uniform(v, bits, signed=False)
    assert q.min() >= 0 and q.max() <= 2**bits - 1 and unit > 0
    assert np.all(np.abs(q * unit - v) <= unit / 2 * (1 + 1e-9))


@settings(max_examples=100, deadline=None)
@given(v=hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(-1e5, 1e5)))
def test_mantissa_exponent_properties(v):
    mant, exp, sat = mantissa_exponent(v, 13, 3)
    assert np.all(np.abs(mant) <= 4095) and np.all((exp >= 0) & (exp <= 7))
    ok = ~sat
    assert np.all(np.abs(mant[ok] * 2.0 ** exp[ok] - v[ok]) <= 2.0 ** exp[ok] / 2 + 1e-9)
    assert np.array_equal(sat, np.abs(v) > 4095.5 * 2**7)


@settings(max_examples=100, deadline=None)
@given(
    q=hnp.arrays(
        np.int32,
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=40),
        elements=st.integers(-127, 127),
    ),
    bits=st.integers(4, 24),
)
def test_accumulator_shift_makes_the_worst_row_fit(q, bits):
    shift = accumulator_shift(q, bits)
    worst = np.abs(q.astype(np.int64)).sum(axis=1).max()
    assert worst / 2**shift <= 2 ** (bits - 1) - 1
    assert shift == 0 or worst / 2 ** (shift - 1) > 2 ** (bits - 1) - 1  # the least that fits


def test_chunked_quantisation_equals_one_call(monkeypatch):
    import importlib

    module = importlib.import_module("stac.ir.passes.quantise")
    monkeypatch.setattr(module, "CHUNK_ELEMENTS", 64)  # 2 rows of 30 per chunk
    w, theta = _random(out_f=50, in_f=30, seed=4)
    after = quantise(_graph(w, theta), load_profile("loihi2"))
    q, scale = quantise_weight(w, 8)
    np.testing.assert_array_equal(after.nodes["fc"].weight, dequantise(q, scale))
    layer = after.metadata["quantise"]["layers"]["fc"]
    assert layer["rel_rms"] == pytest.approx(error_stats(w, dequantise(q, scale))["rel_rms"])
    assert layer["accumulator_shift"] == accumulator_shift(q, 16)


def test_graded_encoders_need_graded_spikes_wide_enough(tmp_path):
    w, _ = _random(out_f=3, in_f=4)
    theta = np.array([1.0, 2.0, 4.0, 8.0], np.float32)
    g = _graph(w, theta)
    graded = SignedIF(theta, max_payload=15)
    g.nodes["enc"] = graded
    need = graded.bits_per_spike()  # sign + ceil(log2(15 * 8 + 1)) = 8
    assert need == 8
    ok = quantise(g, load_profile("loihi2"))  # 32-bit payloads
    assert ok.metadata["quantise"]["layers"]["enc"]["payload_bits_needed"] == 8
    assert not [i for i in issues_of(ok)["quantise"] if i.level == "error"]
    narrow = tmp_path / "narrow.toml"
    narrow.write_text(
        (PROFILE_DIR / "loihi2.toml")
        .read_text()
        .replace("payload_bits = { value = 32", "payload_bits = { value = 6")
    )
    for profile, limit in (
        (load_profile_file(narrow), "spikes.payload_bits"),
        (load_profile("loihi1"), "spikes.graded"),
    ):
        errors = [
            (i.node, i.limit)
            for i in issues_of(quantise(g, profile))["quantise"]
            if i.level == "error"
        ]
        assert ("enc", limit) in errors
