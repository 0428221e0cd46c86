"""Bit-accurate fixed-point steps (stac.sim.loihi, stac.sim.neurons): gold arrays from Lava,
hand-computed single steps, and the overflow / wrap behaviour."""

import numpy as np
import pytest
import torch

from paths import NIR_PAPER
from stac.errors import StacError
from stac.profiles import load_profile
from stac.sim import fixed_point as fx
from stac.sim import loihi as lh
from stac.sim import neurons as nrn
from stac.sim.neurons import signed_if_scan

# Lava's bit-accurate widths (src/lava/proc/lif/models.py AbstractPyLifModelFixed and
# PyLifModelBitAcc; src/lava/proc/dense/models.py PyDenseModelBitAcc).
# The weight exponent's range is not in Lava (it shifts by any weight_exp); -8..7 is the
# bundled loihi2 profile's.
LAVA = fx.LoihiFormat(
    state_bits=24,
    decay_bits=12,
    threshold_bits=17,
    threshold_shift=6,
    bias_mantissa_bits=13,
    bias_exp_bits=3,
    input_bits=16,
    weight_bits=8,
    weight_exp_min=-8,
    weight_exp_max=7,
)


def t(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def lif_step(a_in, u, v, **params):
    p = lh.lif_params(**{"bias_mant": 0, "bias_exp": 0, **params})
    s, state = lh.lif_fixed_step(t(*a_in), lh.LIFFixedState(t(*u), t(*v)), p, LAVA)
    return s.tolist(), state.u.tolist(), state.v.tolist()


def run_lif(a_in_steps, **params):
    p = lh.lif_params(**{"bias_mant": 0, "bias_exp": 0, **params})
    state = lh.lif_initial_state((1,))
    trace = []
    for a in a_in_steps:
        s, state = lh.lif_fixed_step(t(a), state, p, LAVA)
        trace.append((bool(s[0]), int(state.u[0]), int(state.v[0])))
    return trace


# --- gold arrays produced by Lava -------------------------------------------------------------


def test_reproduces_the_nir_papers_lava_fixed_point_lif_run_bit_for_bit():
    """NIR paper, 01_lif: Lava CPU fixed point (Loihi2SimCfg fixed_pt), 1000 steps.

    Parameters as the paper's paper/nir_to_lava.py derives them from lif_norse.nir (tau 2.5 ms,
    threshold 0.1, dt 1e-4): dv = int(0.04 * 4095), du = int(1.0 * 4095) (no current
    leak), vth = int(0.1 * 131071) >> 9, Dense weight = int(0.04 * 256); the RingBuffer's spike
    reaches the LIF one step later through the Dense.
    """
    rows = np.loadtxt(NIR_PAPER / "01_lif" / "lif_lava_cpu_fixed.csv", delimiter=",")
    spikes_in = torch.as_tensor(rows[:, 0:1], dtype=torch.int64)
    weights = lh.prepare_dense_weights(torch.tensor([[int(0.04 * 256)]]), LAVA)
    dense = lh.DenseFixedParams(weights, weight_exp=0, graded=False)
    lif = lh.lif_params(
        du=int(1.0 * 4095), dv=int(0.04 * 4095), vth=int(0.1 * 131071) >> 9, fmt=LAVA
    )
    d_state, l_state = lh.dense_initial_state((1,)), lh.lif_initial_state((1,))
    volts, spikes = [], []
    for s in spikes_in:
        a, d_state = lh.dense_fixed_step(s, d_state, dense, LAVA)
        out, l_state = lh.lif_fixed_step(a, l_state, lif, LAVA)
        volts.append(int(l_state.v[0]))
        spikes.append(int(out[0]))
    assert volts == rows[:, 1].astype(int).tolist()
    assert spikes == rows[:, 2].astype(int).tolist()
    assert np.flatnonzero(spikes).tolist() == [461, 511, 711, 761]


def test_lava_unit_test_gold_arrays():
    """Gold values from lava-nc tests/lava/proc/lif/test_models.py (input straight to a_in)."""
    # test_bitacc_pm_impulse_du: du = 2047 (+ ds_offset = 1/2 per step), impulse of 128
    trace = run_lif([128] + [0] * 7, du=2047, dv=0, vth=256)
    assert [u for _, u, _ in trace] == [1 << (13 - j) for j in range(8)]
    # test_bitacc_pm_impulse_dv: dv = 2048, du = 0 (ds_offset still decays u by 1/4096)
    trace = run_lif([128] + [0] * 7, du=0, dv=2048, vth=256)
    assert [v for _, _, v in trace] == [8192, 12286, 14331, 15351, 15859, 16111, 16235, 16295]
    # test_bitacc_pm_no_decay: bias 2 << 6 = 128 per step, vth 8 << 6: spikes at steps 4, 9
    trace = run_lif([0] * 10, du=0, dv=0, vth=8, bias_mant=2, bias_exp=6)
    assert [i for i, (s, _, _) in enumerate(trace) if s] == [4, 9]
    # test_bitacc_pm_scaling_of_bias: v = bias_mant * 2**bias_exp after one step
    assert run_lif([0], du=0, dv=0, vth=2**17, bias_mant=2**12 - 1, bias_exp=5)[0][2] == 4095 * 32


# --- LIF, hand-computed single steps --------------------------------------------------------


def test_lif_input_is_msb_aligned_and_current_decay_includes_ds_offset():
    # a_in = 1 -> u = 1 << 6 = 64; du = 4095 (+1) clears the old current; v = 0 + 64
    assert lif_step([1], [5000], [0], du=4095, dv=0, vth=100) == ([False], [64], [64])
    # du = 0 still decays: 4096 * 4095 / 4096 = 4095
    assert lif_step([0], [4096], [0], du=0, dv=4095, vth=100)[1] == [4095]


def test_decay_rounds_toward_zero_for_negative_values():
    # u = -5, du = 2047 (+1): -5 * 2048 / 4096 = -2.5 -> -2 (a floor would give -3)
    _, u, v = lif_step([0], [-5], [-7], du=2047, dv=2048, vth=100)
    assert u == [-2]
    assert v == [-3 + -2]  # v: -7 * 2048 / 4096 = -3.5 -> -3, plus the new u


def test_spike_needs_voltage_strictly_above_shifted_threshold_and_resets_to_zero():
    # vth = 2 -> 128. v = 64 + 64 = 128 is not above it; 129 is, and v resets to 0.
    assert lif_step([1], [0], [64], du=4095, dv=0, vth=2) == ([False], [64], [128])
    assert lif_step([1], [0], [65], du=4095, dv=0, vth=2) == ([True], [64], [0])


def test_bias_mantissa_and_exponent():
    # 3 << 2 = 12; -5 with exponent -1 is an arithmetic shift: -5 >> 1 = -3
    assert lif_step(
        [0, 0], [0, 0], [0, 0], du=4095, dv=0, vth=1000, bias_mant=t(3, -5), bias_exp=t(2, -1)
    )[2] == [12, -3]


def test_current_wraps_once_past_24_bits_and_plus_two_pow_23_stays():
    top = 2**23
    # u = 2**23 - 1, du = 0: 8388607 * 4095 >> 12 = 8386559; + 100 << 6 = 8392959 > 2**23
    # -> wraps to 8392959 - 2**24 = -8384257
    _, u, _ = lif_step([100], [top - 1], [0], du=0, dv=4095, vth=0)
    assert u == [-8384257]
    # the mirror image: -8386559 - 6400 = -8392959 <= -2**23 -> + 2**24
    _, u, _ = lif_step([-100], [-(top - 1)], [0], du=0, dv=4095, vth=0)
    assert u == [8384257]
    # Lava wraps only values above +2**23: exactly +2**23 is kept, -2**23 becomes +2**23
    p = lh.lif_params(du=4095, dv=4095, vth=0)
    state = lh.LIFFixedState(t(0), t(0))
    _, state = lh.lif_fixed_step(t(top >> 6), state, p, LAVA)  # input alone reaches 2**23
    assert state.u.tolist() == [top]
    _, state = lh.lif_fixed_step(t(-(top >> 6)), lh.LIFFixedState(t(0), t(0)), p, LAVA)
    assert state.u.tolist() == [top]  # -2**23 is wrapped to +2**23


def test_voltage_saturates_at_24_bits_instead_of_wrapping():
    top = 2**23
    # v = 2**23 - 2, no decay (dv = 0), + u = 100 << 6 -> clipped to 2**23 - 1. (The
    # threshold 2**17 is one past the 17-bit range, which Lava accepts: no spike.)
    s, _, v = lif_step([100], [0], [top - 2], du=4095, dv=0, vth=2**17)
    assert (s, v) == ([False], [top - 1])
    # any saturated voltage is above the largest legal threshold (131071 << 6): it fires
    assert lif_step([100], [0], [top - 2], du=4095, dv=0, vth=2**17 - 1)[0] == [True]
    _, _, v = lif_step([-100], [0], [-(top - 2)], du=4095, dv=0, vth=2**17 - 1)
    assert v == [-(top - 1)]


def test_lif_parameter_ranges_are_checked_against_the_format():
    with pytest.raises(StacError, match=r"LIF du must lie in \[0, 4095\]"):
        lh.lif_params(du=4096, dv=0, vth=1, fmt=LAVA)
    with pytest.raises(StacError, match="LIF vth"):
        lh.lif_params(du=0, dv=0, vth=2**17, fmt=LAVA)
    with pytest.raises(StacError, match="LIF bias_mant"):
        lh.lif_params(du=0, dv=0, vth=1, bias_mant=4096, fmt=LAVA)
    with pytest.raises(StacError, match="must be integers"):
        lh.lif_params(du=0, dv=0, vth=torch.tensor([1.5]))


# --- Dense --------------------------------------------------------------------------------------


def test_weights_are_clipped_and_truncated_as_lava_does():
    # mixed sign: clip to [-256, 255], then the lowest bit is cleared (floor): 3 -> 2, -3 -> -4
    mixed = lh.prepare_dense_weights(t(3, -3, 300, -300, 1)[None], LAVA)
    assert mixed.tolist() == [[2, -4, 254, -256, 0]]
    # excitatory: [0, 255], nothing truncated at 8 bits; with 6 bits the 2 low bits go
    assert lh.prepare_dense_weights(t(3, 300)[None], LAVA).tolist() == [[3, 255]]
    assert lh.prepare_dense_weights(t(7, 9)[None], LAVA, num_weight_bits=6).tolist() == [[4, 8]]
    # inhibitory: the magnitude is clipped and truncated
    assert lh.prepare_dense_weights(t(-3, -300)[None], LAVA).tolist() == [[-3, -255]]
    assert lh.sign_mode_of(t(0, 0)) is lh.SignMode.EXCITATORY


def test_dense_output_is_the_previous_steps_accumulation():
    w = t(1, 2, 4, 8, 16, 32).reshape(2, 3)
    p = lh.DenseFixedParams(w, weight_exp=0, graded=False)
    state = lh.dense_initial_state((2,))
    out1, state = lh.dense_fixed_step(t(1, 0, 3), state, p, LAVA)  # 3 is a spike: 1
    out2, state = lh.dense_fixed_step(t(0, 1, 0), state, p, LAVA)
    assert out1.tolist() == [0, 0]
    assert out2.tolist() == [1 + 4, 8 + 32]
    assert state.a_buff.tolist() == [2, 16]


def test_graded_spikes_multiply_and_weight_exp_shifts():
    w = t(1, 2, 4, 8, 16, 32).reshape(2, 3)
    graded = lh.DenseFixedParams(w, weight_exp=1, graded=True)
    _, state = lh.dense_fixed_step(t(3, -1, 0), lh.dense_initial_state((2,)), graded, LAVA)
    assert state.a_buff.tolist() == [(3 - 2) << 1, (24 - 16) << 1]
    # a negative exponent is an arithmetic right shift: -3 >> 1 = -2, 5 >> 1 = 2
    down = lh.DenseFixedParams(t(-3, 5).reshape(2, 1), weight_exp=-1, graded=False)
    _, state = lh.dense_fixed_step(t(1), lh.dense_initial_state((2,)), down, LAVA)
    assert state.a_buff.tolist() == [-2, 2]


def test_dense_accumulator_overflow_is_refused_unless_lava_python_behaviour_is_asked():
    w = torch.full((1, 200), 255, dtype=torch.int64)  # 200 x 255 = 51000 > 2**15 - 1
    p = lh.DenseFixedParams(w, weight_exp=0, graded=False)
    with pytest.raises(StacError, match="overflows the 16-bit dendritic accumulator"):
        lh.dense_fixed_step(
            torch.ones(200, dtype=torch.int64), lh.dense_initial_state((1,)), p, LAVA
        )
    _, state = lh.dense_fixed_step(
        torch.ones(200, dtype=torch.int64), lh.dense_initial_state((1,)), p, LAVA, strict=False
    )
    assert state.a_buff.tolist() == [51000]
    # Lava sends the buffer through an int32 channel: past 32 bits it wraps
    out, _ = lh.dense_fixed_step(
        t(0), lh.DenseFixedState(t(2**31 + 5)), lh.DenseFixedParams(t(1)[None], 0, False), LAVA
    )
    assert out.tolist() == [-(2**31) + 5]


# --- SignedIF --------------------------------------------------------------------------------


def test_signed_if_hand_example():
    # theta = 4, drive 1: v = 1, 2 (spike, -> -2), -1, 0, 1, 2 (spike): rate 1/4
    theta = t(4)
    state = nrn.SignedIFFixedState(t(0))
    out = []
    for _ in range(6):
        s, state = nrn.signed_if_fixed_step(t(1), state, theta, LAVA)
        out.append(int(s[0]))
    assert out == [0, 1, 0, 0, 0, 1]
    # exactly -theta/2 does not fire (the float rule is v < -theta/2); -theta does
    s1, state = nrn.signed_if_fixed_step(t(-2), nrn.SignedIFFixedState(t(0)), theta, LAVA)
    s2, state = nrn.signed_if_fixed_step(t(-2), state, theta, LAVA)
    assert (int(s1[0]), int(s2[0]), int(state.v[0])) == (0, -1, 0)


def test_signed_if_saturates_its_potential():
    top = 2**23 - 1
    s, state = nrn.signed_if_fixed_step(t(2**30), nrn.SignedIFFixedState(t(0)), t(2**20), LAVA)
    assert int(s[0]) == 1 and int(state.v[0]) == top - 2**20


@pytest.mark.parametrize(
    "max_payload, per_step, onset",
    [
        (1, True, False),
        (1, False, False),
        (3, True, False),
        (3, False, True),
        (7, False, False),
    ],
)
def test_integer_signed_if_matches_the_float_reference_spike_for_spike(
    max_payload, per_step, onset
):
    gen = torch.Generator().manual_seed(max_payload)
    theta = torch.randint(1, 200, (512,), generator=gen)
    drive = torch.randint(
        -300 * max_payload, 300 * max_payload, (16, 512) if per_step else (512,), generator=gen
    )
    ref = signed_if_scan(
        drive.double(), theta.double(), 16, per_step=per_step, max_payload=max_payload, onset=onset
    )
    fixed = nrn.signed_if_fixed_scan(
        drive, theta, 16, LAVA, per_step=per_step, max_payload=max_payload, onset=onset
    )
    assert torch.equal(fixed, ref.to(torch.int64))
    assert int(fixed.abs().max()) == max_payload  # graded payloads are exercised
    assert int(fixed.abs().sum()) > 1000  # the comparison covers many spikes


def test_graded_payload_hand_example():
    # theta = 4, K = 3: v = 9 -> floor((18 + 4) / 8) = 2, v = 1; v = 10 (2.5 thresholds,
    # half up) -> 3, v = -2; v = 7 -> floor(18 / 8) = 2, v = -1; v = -20 -> floor(-36 / 8)
    # = -5, clipped to -3, v = -8
    state = nrn.SignedIFFixedState(t(0))
    out = []
    for x in (9, 9, 9, -19):
        s, state = nrn.signed_if_fixed_step(t(x), state, t(4), LAVA, max_payload=3)
        out.append((int(s[0]), int(state.v[0])))
    assert out == [(2, 1), (3, -2), (2, -1), (-3, -8)]


def test_quantised_float_drive_follows_the_float_encoder():
    gen = torch.Generator().manual_seed(1)
    threshold = torch.rand(1000, generator=gen) * 3 + 0.1
    drive = (torch.rand(1000, generator=gen) * 2 - 1) * threshold * 1.2
    steps = 16
    x_q, theta_q = nrn.quantise_drive(drive, threshold, LAVA)
    assert int(theta_q[0]) == 2**21 and int(x_q.abs().max()) < 2**23
    # an onset drive of 16 steps at once needs 17 thresholds of headroom: 2**(23 - 5)
    assert int(nrn.quantise_drive(drive, threshold, LAVA, headroom=17)[1][0]) == 2**18
    fixed, _ = fx.scan(
        lambda x, st: nrn.signed_if_fixed_step(x, st, theta_q, LAVA),
        x_q.expand(steps, -1),
        nrn.SignedIFFixedState(torch.zeros_like(x_q)),
    )
    ref = signed_if_scan(drive, threshold, steps, per_step=False).to(torch.int64)
    assert (fixed == ref).float().mean() > 0.999
    decoded = fixed.double().mean(0) * threshold.double()
    clipped = torch.minimum(drive.abs(), threshold).double() * drive.sign()
    assert (decoded - clipped).abs().max() <= threshold.max() / steps + 1e-6


# --- the format comes from a profile ----------------------------------------------------------


def test_format_is_read_from_the_profile():
    assert fx.LoihiFormat.from_profile(load_profile("loihi2")) == LAVA
    with pytest.raises(StacError, match=r"host-cpu .*has no field 'fixed_point.state_bits'"):
        fx.LoihiFormat.from_profile(load_profile("host-cpu"))


def test_dense_params_check_the_exponent_range():
    with pytest.raises(StacError, match=r"Dense weight_exp must lie in \[-8, 7\]"):
        lh.dense_params(t(1)[None], weight_exp=8, graded=False, fmt=LAVA)
    assert lh.dense_params(t(3, -3)[None], -8, False, LAVA).weights.tolist() == [[2, -4]]


def test_the_executor_core_refuses_a_node_type_its_table_lacks_by_name():
    from stac.sim.executor import Executor, check_supported, lookup

    nodes = {"a": 1, "b": "two"}
    with pytest.raises(StacError, match=r"the x run has no semantics for node 'b' \(str\)"):
        Executor.from_edges(nodes, [("a", "b")], ["a", "b"]).sweep(
            lambda name, node, inputs: lookup({int: 0}, name, node, "the x run")
        )
    with pytest.raises(StacError, match=r"node\(s\) b \(str\); supported types: int"):
        check_supported(nodes, [int], "the x run")
    # back edges read the previous sweep; forward edges this sweep's values
    core = Executor.from_edges(
        {"x": 0, "y": 0}, [("x", "y"), ("y", "x")], ["x", "y"], back=[("y", "x")]
    )
    out = core.sweep(lambda name, node, inputs: sum(inputs) + 1, prev={"y": 10})
    assert out == {"x": 11, "y": 12}
