"""AdEx neurons: the node, its float semantics against an independent ODE solver and the
published firing patterns, its exact LIF special case, and the trainable layer."""

from __future__ import annotations

from functools import lru_cache

import nir
import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from stac.ir.graph import make_graph
from stac.ir.nodes.adex import AdEx, as_nir, fixed_point_support
from stac.ir.nodes.base import stac_node_types
from stac.ir.serialize import load, node_fields, save
from stac.sim.adex import AdExState, adex_init, adex_params, adex_scan, adex_step
from stac.sim.nir_neurons import LIFState, lif_step
from stac.train.adex import LEARNED, AdExLayer
from stac.train.surrogate import superspike

# Naud, Marcille, Clopath & Gerstner 2008, Biol. Cybern. 99:335, Table 1 (Fig. 4a, 4b):
# C (pF), g_L (nS), E_L (mV), V_T (mV), Delta_T (mV), a (nS), tau_w (ms), b (pA), V_r (mV),
# I (pA). Spikes are cut at V_peak = 0 mV.
NAUD = {
    "tonic": (200.0, 10.0, -70.0, -50.0, 2.0, 2.0, 30.0, 0.0, -58.0, 500.0),
    "adapting": (200.0, 12.0, -70.0, -50.0, 2.0, 2.0, 300.0, 60.0, -58.0, 500.0),
}
V_PEAK = 0.0


def naud_node(rows: list[tuple[float, ...]]) -> tuple[AdEx, np.ndarray]:
    """Brette-Gerstner parameters as the node's fields (tau_m = C/g_L, R = 1/g_L), and I."""
    c, g_l, e_l, v_t, d_t, a, tau_w, b, v_r, current = np.array(rows, dtype=np.float64).T
    node = AdEx(
        tau_m=c / g_l,
        tau_w=tau_w,
        a=a,
        b=b,
        delta_t=d_t,
        v_th=v_t,
        v_reset=v_r,
        v_rest=e_l,
        r=1 / g_l,
        v_peak=np.full_like(c, V_PEAK),
    )
    return node, current


def rheobase(row: tuple[float, ...]) -> float:
    """Largest constant current with a resting state: the maximum over v of the steady-state
    I-V curve I(v) = (g_L + a)(v - E_L) - g_L Delta_T exp((v - V_T)/Delta_T) (Touboul &
    Brette 2008; the neuron fires above it when a/g_L < tau_m/tau_w, a saddle-node)."""
    c, g_l, e_l, v_t, d_t, a, tau_w = row[:7]
    assert a / g_l < (c / g_l) / tau_w  # the saddle-node case
    return (g_l + a) * (v_t - e_l - d_t + d_t * np.log(1 + a / g_l))


@lru_cache(maxsize=None)
def euler_spike_times(dt: float, t_end: float, scale: tuple[float, ...] = ()) -> list[np.ndarray]:
    """Spike times of stac's Euler step for NAUD's neurons (then tonic neurons at ``scale`` x
    rheobase); a spike in step k is stamped at the end of the step, (k + 1) dt."""
    rows = list(NAUD.values()) + [NAUD["tonic"]] * len(scale)
    node, current = naud_node(rows)
    current[len(NAUD) :] = [s * rheobase(NAUD["tonic"]) for s in scale]
    steps = int(round(t_end / dt))
    with torch.no_grad():
        drive = torch.as_tensor(current).expand(steps, len(rows))
        spikes, _ = adex_scan(drive, adex_params(node, torch.float64), dt)
    return [(torch.nonzero(spikes[:, k]).flatten().numpy() + 1) * dt for k in range(len(rows))]


def reference_spike_times(row: tuple[float, ...], n: int) -> np.ndarray:
    """The first n spike times of the AdEx ODE integrated by scipy (LSODA, tolerances 1e-10),
    each spike an event v = V_peak after which the solver restarts from the reset state."""
    c, g_l, e_l, v_t, d_t, a, tau_w, b, v_r, current = row

    def rhs(_t: float, y: np.ndarray) -> list[float]:
        v, w = y
        return [
            (-g_l * (v - e_l) + g_l * d_t * np.exp((v - v_t) / d_t) - w + current) / c,
            (a * (v - e_l) - w) / tau_w,
        ]

    def peak(_t: float, y: np.ndarray) -> float:
        return float(y[0] - V_PEAK)

    peak.terminal, peak.direction = True, 1  # type: ignore[attr-defined]
    t0, y0, times = 0.0, [e_l, 0.0], []
    while len(times) < n:
        sol = solve_ivp(rhs, (t0, 1000.0), y0, method="LSODA", events=peak, rtol=1e-10, atol=1e-10)
        t0 = float(sol.t_events[0][0])
        times.append(t0)
        y0 = [v_r, float(sol.y_events[0][0][1]) + b]
    return np.array(times)


def test_fires_above_rheobase_and_not_below() -> None:
    times = euler_spike_times(0.1, 200.0, (0.95, 1.05))
    assert times[2].size == 0  # 5 % below the closed-form rheobase: silent for 200 ms
    assert times[3].size >= 1  # 5 % above: fires
    assert times[0].size > 10  # Naud's tonic current, far above: fires regularly


def test_adaptation_and_tonic_patterns_of_naud_et_al() -> None:
    tonic, adapting = euler_spike_times(0.1, 200.0, (0.95, 1.05))[:2]
    isi_t, isi_a = np.diff(tonic)[:5], np.diff(adapting)[:5]
    # Fig. 4b (adaptation): every inter-spike interval longer than the one before, by far
    assert np.all(np.diff(isi_a) > 0) and isi_a[-1] > 3 * isi_a[0]
    # Fig. 4a (tonic): intervals settle almost at once
    assert isi_t[-1] < 1.1 * isi_t[0]
    assert isi_a[-1] > 3 * isi_t[-1]


def test_spike_times_match_an_independent_ode_solver_and_converge_with_dt() -> None:
    n = 4
    err = {}
    for dt in (0.1, 0.025):
        got = euler_spike_times(dt, 65.0)
        for k, row in enumerate(NAUD.values()):
            ref = reference_spike_times(row, n)
            assert got[k].size >= n
            e = np.abs(got[k][:n] - ref)
            # forward Euler: each spike lags by O(dt) and the lags add up spike after spike
            assert np.all(e <= 5 * dt * np.arange(1, n + 1)), (dt, e)
            err[dt, k] = e.max()
    for k in range(len(NAUD)):
        assert err[0.025, k] < err[0.1, k] / 2.5  # first order: 4x smaller dt, ~4x smaller error


def test_exact_lif_case_maps_to_nir_lif() -> None:
    n = 5
    node = AdEx(
        tau_m=np.array([5.0, 8.0, 10.0, 15.0, 20.0]),
        tau_w=np.full(n, 50.0),
        a=np.zeros(n),
        b=np.zeros(n),
        delta_t=np.zeros(n),
        v_th=np.full(n, 1.0),
        v_reset=np.zeros(n),
        v_rest=np.array([0.1, -0.2, 0.0, 0.2, -0.1]),
        r=np.array([1.0, 1.5, 2.0, 1.2, 0.8]),
        v_peak=np.full(n, 3.0),
    )
    lif = as_nir(node)
    assert isinstance(lif, nir.LIF)
    assert np.array_equal(lif.tau, node.tau_m) and np.array_equal(lif.v_leak, node.v_rest)
    assert np.array_equal(lif.r, node.r) and np.array_equal(lif.v_threshold, node.v_th)
    assert np.array_equal(lif.v_reset, node.v_reset)
    # NIR's LIF, tau dv/dt = (v_leak - v) + R I, from rest under a constant I reaches the
    # threshold at t* = tau ln(R I / (R I + v_leak - v_th)) (here v starts at v_leak).
    current, dt = 3.0, 0.01
    drive = current * torch.ones(1600, 1, n, dtype=torch.float64)
    with torch.no_grad():
        spikes, _ = adex_scan(drive, adex_params(node, torch.float64), dt)
    assert torch.all(spikes[:, 0].sum(0) > 0)
    first = (spikes[:, 0].argmax(0).numpy() + 1) * dt
    ri = node.r * current
    t_star = node.tau_m * np.log(ri / (ri + node.v_rest - node.v_th))
    assert np.all(np.abs(first - t_star) < 0.02 * t_star + 2 * dt), (first, t_star)
    # and step for step it is stac's NIR LIF semantics, bit for bit
    x = torch.randn(300, 2, n, dtype=torch.float32) + 1.5
    params = adex_params(node)
    a_state, l_state = adex_init(params, (2,)), LIFState(adex_init(params, (2,)).v)
    fired = 0.0
    for xt in x:
        s_a, a_state = adex_step(xt, a_state, params, 0.5)
        s_l, l_state = lif_step(lif, xt, l_state, 0.5)
        assert torch.equal(s_a, s_l) and torch.equal(a_state.v, l_state.v)
        fired += float(s_a.sum())
    assert fired > 100  # the comparison covered many spikes and resets


@pytest.mark.parametrize("change", [{"a": 0.1}, {"b": 0.5}, {"delta_t": 0.01}])
def test_any_adaptation_or_exponential_has_no_nir_form(change: dict[str, float]) -> None:
    fields = {
        "tau_m": 10.0,
        "tau_w": 50.0,
        "a": 0.0,
        "b": 0.0,
        "delta_t": 0.0,
        "v_th": 1.0,
        "v_reset": 0.0,
        "v_rest": 0.0,
        "r": 1.0,
        "v_peak": 2.0,
    }
    arrays = {k: np.full(3, v) for k, v in fields.items()}
    arrays[next(iter(change))][1] = next(iter(change.values()))  # one neuron differs
    assert as_nir(AdEx(**arrays)) is None


def test_no_profile_runs_adex_in_fixed_point() -> None:
    node, _ = naud_node([NAUD["tonic"]])
    reason = fixed_point_support(node, "layer3.adex")
    assert reason.startswith("layer3.adex: AdEx") and "no fixed-point form" in reason


def test_exponential_cannot_overflow() -> None:
    # a tiny slope factor and a far cut-off: exp((v - v_th)/delta_t) would overflow float32
    n = 2
    node = AdEx(
        tau_m=np.full(n, 10.0),
        tau_w=np.full(n, 50.0),
        a=np.zeros(n),
        b=np.ones(n),
        delta_t=np.full(n, 1e-3),
        v_th=np.ones(n),
        v_reset=np.zeros(n),
        v_rest=np.zeros(n),
        r=np.ones(n),
        v_peak=np.full(n, 50.0),
    )
    layer = AdExLayer.from_node(node, dt=1.0)
    spikes, state = layer(torch.full((60, n), 3.0))
    assert spikes.sum() > 5 and torch.isfinite(state.v).all()
    spikes.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)


def test_node_round_trips_through_the_ir_file(tmp_path) -> None:
    node, _ = naud_node(list(NAUD.values()))
    assert stac_node_types()["AdEx"] is AdEx
    graph = make_graph(
        {"in": nir.Input(np.array([2])), "n": node, "out": nir.Output(np.array([2]))},
        [("in", "n"), ("n", "out")],
    )
    save(graph, tmp_path / "g.json")
    back = load(tmp_path / "g.json").nodes["n"]
    for key, value in node_fields(node).items():
        got = node_fields(back)[key]
        assert np.array_equal(got, value) if isinstance(value, np.ndarray) else got == value


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"tau_m": np.array([1.0, -1.0])}, r"AdEx.tau_m must be > 0"),
        ({"tau_w": np.array([0.0, 1.0])}, r"AdEx.tau_w must be > 0"),
        ({"r": np.array([1.0, 0.0])}, r"AdEx.r must be > 0"),
        ({"delta_t": np.array([-0.1, 0.2])}, r"AdEx.delta_t must be >= 0"),
        ({"v_peak": np.array([0.5, 2.0])}, r"AdEx.v_peak must be above v_th"),
        ({"v_reset": np.array([0.0, 2.5])}, r"AdEx.v_reset must be below v_peak"),
        (
            {"delta_t": np.zeros(2), "v_reset": np.array([0.0, 1.0])},
            r"AdEx.v_reset must be below v_th wherever delta_t = 0",
        ),
        ({"a": np.zeros(3)}, r"AdEx.a has shape \(3,\), but tau_m has \(2,\)"),
        ({"b": np.ones((2, 1))}, r"AdEx.b must have 1 dimension"),
        ({"v_rest": np.array([0.0, np.nan])}, r"AdEx.v_rest contains NaN"),
        ({"v_th": [1.0, 1.0]}, r"AdEx.v_th must be a numpy array"),
    ],
)
def test_node_validates_its_fields(change: dict, match: str) -> None:
    fields = {
        k: np.full(2, v)
        for k, v in {
            "tau_m": 10.0,
            "tau_w": 50.0,
            "a": 0.1,
            "b": 0.1,
            "delta_t": 0.2,
            "v_th": 1.0,
            "v_reset": 0.0,
            "v_rest": 0.0,
            "r": 1.0,
            "v_peak": 2.0,
        }.items()
    }
    with pytest.raises(ValueError, match=match):
        AdEx(**{**fields, **change})


def test_superspike_is_heaviside_forward_and_fast_sigmoid_backward() -> None:
    x = torch.tensor([-1.0, -0.2, 0.0, 0.2, 1.0], requires_grad=True)
    s = superspike(x, slope=5.0)
    assert torch.equal(s, torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0]))
    s.sum().backward()
    # 1 / (1 + beta |x|)^2 with beta = 5: 1/36, 1/4, 1, 1/4, 1/36
    assert torch.allclose(x.grad, torch.tensor([1 / 36, 1 / 4, 1.0, 1 / 4, 1 / 36]))


def test_gradient_reaches_every_learnable_parameter_of_every_neuron() -> None:
    layer = AdExLayer(3)
    spikes, _ = layer(torch.full((30, 2, 3), 1.5))
    counts = spikes.sum(0).mean(0)
    ((counts - torch.tensor([0.0, 4.0, 8.0])) ** 2).sum().backward()
    for name in LEARNED:
        grad = getattr(layer, f"raw_{name}").grad
        assert grad is not None and torch.isfinite(grad).all(), name
        assert torch.all(grad != 0), (name, grad)


def test_layer_learns_target_spike_counts_and_exports_them() -> None:
    # Four neurons with the same drive and the same initial parameters must learn, through
    # their own dynamics only, to fire 1, 2, 4 and 6 times in 30 steps.
    layer = AdExLayer(4)
    drive = torch.full((30, 4), 1.5)
    target = torch.tensor([1.0, 2.0, 4.0, 6.0])
    opt = torch.optim.Adam(layer.parameters(), lr=0.08)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.96)
    losses = []
    for _ in range(60):
        counts = layer(drive)[0].sum(0)
        loss = ((counts - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = layer(drive)[0].sum(0)
    assert losses[0] > 5.0  # all four start at one spike
    assert ((final - target) ** 2).mean() <= 0.5 and (final - target).abs().max() <= 1, final
    # the exported node runs the same spikes in the reference semantics (plain Heaviside)
    node = layer.to_node()
    spikes, _ = adex_scan(drive, adex_params(node), 1.0)
    assert torch.equal(spikes.sum(0), final)
    assert set(node.metadata) == set() and isinstance(node, AdEx)


def test_layer_keeps_parameters_valid_and_rejects_bad_ones() -> None:
    layer = AdExLayer(2, v_th=[0.8, 1.2], tau_m=15.0)
    node = layer.to_node()
    assert np.allclose(node.v_th, [0.8, 1.2]) and np.allclose(node.tau_m, 15.0)
    with torch.no_grad():  # any raw value maps back inside the domain
        for p in layer.parameters():
            p.fill_(30.0)
    bad = layer.to_node()
    assert np.all(bad.v_th < bad.v_peak) and np.all(bad.tau_m > 0)
    with pytest.raises(ValueError, match="AdExLayer.delta_t must be > 0"):
        AdExLayer(2, delta_t=0.0)
    with pytest.raises(ValueError, match="unknown parameter"):
        AdExLayer(2, tau=3.0)
    with pytest.raises(ValueError, match="AdEx.v_reset must be below v_peak"):
        AdExLayer(2, v_reset=5.0)
    state = AdExState(torch.zeros(2), torch.zeros(2))
    assert layer(torch.zeros(1, 2), state)[0].shape == (1, 2)


def test_the_passes_refuse_an_adex_node_by_name():
    """No profile has a fixed-point AdEx: the legality pass stops with an error naming the
    node, never moving it to the host without a word."""
    from stac.errors import StacError
    from stac.ir.passes import run_passes
    from stac.profiles import load_profile

    adex, _ = naud_node(list(NAUD.values()))
    n = adex.input_shape[0]
    graph = make_graph(
        {
            "input": nir.Input(np.array([3])),
            "w": nir.Linear(np.ones((n, 3), np.float32)),
            "my_adex": adex,
            "output": nir.Output(np.array([n])),
        },
        [("input", "w"), ("w", "my_adex"), ("my_adex", "output")],
    )
    with pytest.raises(StacError, match=rf"my_adex: AdEx neurons \({n}\) have no fixed-point"):
        run_passes(graph, load_profile("loihi2"))
