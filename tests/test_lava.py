"""The lava backend against real Lava (lava-nc 0.10.0, ``Loihi2SimCfg(select_tag="fixed_pt")``)
and against stac's fixed-point steps, bit for bit, with gold arrays recorded from Lava.

Cases: the NIR paper's LIF graph (lif_norse.nir lowered by the backend, 1000 steps), the same
circuit with the paper's own integers against its recorded Lava CSV, a hand-built Dense + LIF
network with random 8-bit weights (mixed, excitatory and inhibitory, odd values, negative and
positive weight_exp, a recurrent Dense), and a two-layer NIR graph with random float weights
(LIF then CubaLIF, per-neuron thresholds, leak and Affine bias). The gold arrays in
tests/data/lava/ come from real Lava runs: ``.venv/bin/python tests/test_lava.py`` records them
again.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import nir
import numpy as np
import pytest

from paths import NIR_PAPER
from stac.backends import resolve_target
from stac.backends.lava.backend import LavaBackend, lava_available, lava_format, run_plan_lava
from stac.backends.lava.fixed import run_plan_fixed
from stac.backends.lava.plan import DenseLayer, LIFLayer, LoihiPlan, plan_from_graph
from stac.errors import StacError
from stac.ir.nir_io import read_nir
from stac.profiles import load_profile, load_profile_file

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "tests" / "data" / "lava"
NIR_LIF = NIR_PAPER / "01_lif"
needs_lava = pytest.mark.skipif(
    not lava_available(), reason="lava-nc is not installed (bash scripts/setup_lava.sh)"
)
FMT = lava_format(load_profile("loihi2"))


# --- the cases ---------------------------------------------------------------------------------


def paper_input() -> np.ndarray:
    """The NIR paper's input spike train (first column of its Lava CSV), [1000, 1]."""
    return np.loadtxt(NIR_LIF / "lif_lava_cpu_fixed.csv", delimiter=",")[:, :1].astype(np.int64)


def case_nir_paper_lif() -> tuple[LoihiPlan, np.ndarray]:
    graph = read_nir(NIR_LIF / "lif_norse.nir", dt=1e-4)
    return plan_from_graph(graph, FMT), paper_input()


def case_dense_lif_random() -> tuple[LoihiPlan, np.ndarray]:
    """16 inputs -> 24 LIF (with a recurrent inhibitory Dense) -> 8 LIF, random 8-bit ints."""
    rng = np.random.default_rng(7)
    dense = {
        "w_in": DenseLayer(rng.integers(-255, 256, (24, 16)), -1, "in"),
        "w_rec": DenseLayer(-rng.integers(0, 256, (24, 24)), -2, "hidden"),
        "w_out": DenseLayer(rng.integers(0, 256, (8, 24)), 1, "hidden"),
    }
    neurons = {
        "hidden": LIFLayer(
            24,
            du=3000,
            dv=400,
            vth=300,
            bias_mant=rng.integers(-200, 200, 24),
            bias_exp=rng.integers(0, 4, 24),
            inputs=["w_in", "w_rec"],
        ),
        "out": LIFLayer(
            8,
            du=1024,
            dv=128,
            vth=5000,
            bias_mant=np.zeros(8, np.int64),
            bias_exp=np.zeros(8, np.int64),
            inputs=["w_out"],
        ),
    }
    spikes = (rng.random((200, 16)) < 0.3).astype(np.int64)
    return LoihiPlan({"in": 16}, dense, neurons, {"y": "out"}, FMT), spikes


def two_layer_graph() -> nir.NIRGraph:
    rng = np.random.default_rng(3)
    nodes = {
        "in": nir.Input(input_type=np.array([10])),
        "fc1": nir.Linear(weight=rng.normal(0, 0.6, (20, 10))),
        "lif": nir.LIF(
            tau=np.full(20, 5e-3),
            r=np.ones(20),
            v_leak=rng.uniform(0, 0.2, 20),
            v_threshold=rng.uniform(0.5, 1.5, 20),
            v_reset=np.zeros(20),
        ),
        "fc2": nir.Affine(weight=rng.normal(0.1, 0.5, (5, 20)), bias=rng.normal(0, 0.1, 5)),
        "out_lif": nir.LIF(
            tau=np.full(5, 8e-3),
            r=np.full(5, 2.0),
            v_leak=np.zeros(5),
            v_threshold=np.full(5, 0.3),
            v_reset=np.zeros(5),
        ),
        "cuba": nir.CubaLIF(
            tau_syn=np.full(5, 4e-3),
            tau_mem=np.full(5, 1e-2),
            r=np.ones(5),
            v_leak=np.zeros(5),
            v_threshold=np.full(5, 0.05),
            v_reset=np.zeros(5),
            w_in=np.ones(5),
        ),
        "fc3": nir.Linear(weight=rng.normal(0.2, 0.5, (5, 20))),
        "out": nir.Output(output_type=np.array([5])),
        "out2": nir.Output(output_type=np.array([5])),
    }
    edges = [
        ("in", "fc1"),
        ("fc1", "lif"),
        ("lif", "fc2"),
        ("fc2", "out_lif"),
        ("out_lif", "out"),
        ("lif", "fc3"),
        ("fc3", "cuba"),
        ("cuba", "out2"),
    ]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3})


def case_nir_two_layer() -> tuple[LoihiPlan, np.ndarray]:
    spikes = (np.random.default_rng(5).random((300, 10)) < 0.25).astype(np.int64)
    return plan_from_graph(two_layer_graph(), FMT), spikes


CASES = {
    "nir_paper_lif": case_nir_paper_lif,
    "dense_lif_random": case_dense_lif_random,
    "nir_two_layer": case_nir_two_layer,
}


def plan_arrays(plan: LoihiPlan) -> dict[str, np.ndarray]:
    """Every integer of a plan, flat, for storing beside the gold traces."""
    out = {}
    for n, d in plan.dense.items():
        out[f"plan/dense/{n}/weights"] = d.weights
        out[f"plan/dense/{n}/weight_exp"] = np.array(d.weight_exp)
    for n, lif in plan.neurons.items():
        for key in ("du", "dv", "vth", "bias_mant", "bias_exp"):
            out[f"plan/lif/{n}/{key}"] = np.asarray(getattr(lif, key))
    return out


def record() -> None:
    """Run every case in Lava and write tests/data/lava/<case>.npz."""
    GOLD.mkdir(parents=True, exist_ok=True)
    for name, build in CASES.items():
        plan, spikes = build()
        run = run_plan_lava(plan, spikes)
        arrays = {"input": spikes, **plan_arrays(plan)}
        for layer, tr in run.traces.items():
            for key, value in tr.items():
                arrays[f"lava/{layer}/{key}"] = value
        np.savez_compressed(GOLD / f"{name}.npz", **arrays)
        print(
            f"{name}: {spikes.shape[0]} steps, spikes per layer "
            f"{ {k: int(v['spikes'].sum()) for k, v in run.traces.items()} }"
        )


def gold(name: str) -> dict[str, np.ndarray]:
    with np.load(GOLD / f"{name}.npz") as f:
        return dict(f)


def assert_traces_equal(
    got: dict[str, dict[str, np.ndarray]], want: dict[str, dict[str, Any]]
) -> None:
    assert sorted(got) == sorted(want)
    for layer in want:
        for key in ("spikes", "v", "u"):
            a, b = np.asarray(got[layer][key]), np.asarray(want[layer][key])
            assert a.shape == b.shape, (layer, key)
            bad = np.argwhere(a != b)
            assert bad.size == 0, f"{layer}.{key} differs first at (step, neuron) {bad[0]}"


def gold_traces(g: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, value in g.items():
        if key.startswith("lava/"):
            _, layer, what = key.split("/")
            out.setdefault(layer, {})[what] = value
    return out


# --- equivalence -------------------------------------------------------------------------------


def plan_from_gold(plan: LoihiPlan, g: dict[str, np.ndarray]) -> LoihiPlan:
    """``plan``'s structure with the integers the gold run gave Lava (its ``plan/`` arrays)."""
    dense = {
        n: DenseLayer(g[f"plan/dense/{n}/weights"], int(g[f"plan/dense/{n}/weight_exp"]), d.source)
        for n, d in plan.dense.items()
    }
    neurons = {
        n: LIFLayer(
            lif.size,
            *(int(g[f"plan/lif/{n}/{k}"]) for k in ("du", "dv", "vth")),
            g[f"plan/lif/{n}/bias_mant"],
            g[f"plan/lif/{n}/bias_exp"],
            lif.inputs,
        )
        for n, lif in plan.neurons.items()
    }
    return LoihiPlan(plan.inputs, dense, neurons, plan.outputs, plan.fmt)


@pytest.mark.parametrize("name", sorted(CASES))
def test_stac_fixed_point_matches_the_recorded_lava_gold(name):
    """stac's fixed-point run of the integers Lava ran reproduces Lava's recorded traces."""
    plan, spikes = CASES[name]()
    g = gold(name)
    assert np.array_equal(g["input"], spikes)
    want = gold_traces(g)
    assert spikes.shape[0] >= 100
    assert all(int(tr["spikes"].sum()) > 0 for tr in want.values()), "a layer never spikes"
    assert_traces_equal(run_plan_fixed(plan_from_gold(plan, g), spikes), want)


def test_the_lowering_follows_nirs_float_semantics_after_lavas_synaptic_delays():
    """The integer layers of a float NIR graph spike as stac's float NIR executor (checked
    against snnTorch, Norse and the NIR paper in tests/test_nir_*) does, one step later per
    Dense (Lava's synaptic delay); the 8-bit weights and integer decays move a few spikes."""
    from stac.sim.stepper import Stepper

    plan, spikes = case_nir_two_layer()
    fixed = run_plan_fixed(plan, spikes)
    ref = Stepper(two_layer_graph()).run(spikes.astype(np.float32)).traces
    for layer, delay in (("lif", 1), ("out_lif", 2), ("cuba", 2)):
        a, b = fixed[layer]["spikes"], ref[layer][:, 0].numpy()
        assert np.abs(a.sum(0) - b.sum(0)).max() <= 2, layer  # per-neuron spike counts
        assert np.mean(a[delay:] != b[:-delay]) < 0.05, layer  # spike for spike, mostly


@needs_lava
@pytest.mark.parametrize("name", sorted(CASES))
def test_lava_and_stac_fixed_point_agree_bit_for_bit(name):
    plan, spikes = CASES[name]()
    run = run_plan_lava(plan, spikes)
    assert_traces_equal(run.traces, run_plan_fixed(plan, spikes))
    assert_traces_equal(run.traces, gold_traces(gold(name)))


@needs_lava
def test_paper_integers_in_lava_and_stac_reproduce_the_papers_lava_csv():
    """The paper's own discretisation (w = 10, du = 4095, dv = 163, vth = 25) through this
    backend's Lava emission and through stac's steps gives the recorded Lava run exactly."""
    rows = np.loadtxt(NIR_LIF / "lif_lava_cpu_fixed.csv", delimiter=",")
    plan = LoihiPlan(
        {"in": 1},
        {"w": DenseLayer(np.array([[10]]), 0, "in")},
        {"lif": LIFLayer(1, 4095, 163, 25, np.zeros(1, np.int64), np.zeros(1, np.int64), ["w"])},
        {"out": "lif"},
        FMT,
    )
    spikes = rows[:, :1].astype(np.int64)
    for traces in (run_plan_lava(plan, spikes).traces, run_plan_fixed(plan, spikes)):
        assert traces["lif"]["v"][:, 0].tolist() == rows[:, 1].astype(int).tolist()
        assert traces["lif"]["spikes"][:, 0].tolist() == rows[:, 2].astype(int).tolist()


def test_the_backends_own_lowering_of_the_paper_graph_spikes_when_the_papers_lava_run_does():
    plan, spikes = case_nir_paper_lif()
    rows = np.loadtxt(NIR_LIF / "lif_lava_cpu_fixed.csv", delimiter=",")
    assert (
        np.flatnonzero(run_plan_fixed(plan, spikes)["1"]["spikes"]).tolist()
        == np.flatnonzero(rows[:, 2]).tolist()
        == [461, 511, 711, 761]
    )


@needs_lava
def test_backend_lowers_and_runs_a_nir_graph_through_the_target():
    profile, backend = resolve_target("loihi2-lava")
    assert isinstance(backend, LavaBackend)
    graph = two_layer_graph()
    plan = backend.lower(graph, profile)
    spikes = (np.random.default_rng(1).random((120, 10)) < 0.3).astype(np.int64)
    run = backend.run_spikes(plan, spikes)
    assert sorted(run.outputs) == ["out", "out2"]
    assert np.array_equal(run.outputs["out2"], run.traces["cuba"]["spikes"])
    assert run.stats["fc1"].synops == int(spikes.sum()) * 20
    assert run.stats["lif"].neuron_updates == 120 * 20
    assert run.stats["lif"].spikes == int(run.traces["lif"]["spikes"].sum()) > 0
    assert backend.summary(plan) is None  # a spike-driven plan has no token run to report


def test_lowering_folds_thresholds_and_leak_into_integers():
    plan = plan_from_graph(two_layer_graph(), FMT)
    lif, fc1 = plan.neurons["lif"], plan.dense["fc1"]
    assert (lif.du, lif.dv) == (4095, round(4096 * 1e-3 / 5e-3))
    assert plan.neurons["cuba"].du == round(4096 * 1e-3 / 4e-3) - 1
    assert np.abs(fc1.weights).max() == 254 and np.all(fc1.weights % 2 == 0)  # mixed: even grid
    # weight / threshold is kept: row i's integers over vth track w_eff[i] / theta_i
    g = two_layer_graph()
    theta, w = g.nodes["lif"].v_threshold, g.nodes["fc1"].weight * 1e-3 / 5e-3
    ratio = fc1.weights * 2.0**fc1.weight_exp / lif.vth
    assert np.allclose(ratio, w / theta[:, None], atol=2 * 2.0**fc1.weight_exp / lif.vth)


# --- bad input ---------------------------------------------------------------------------------


def _edit(graph: nir.NIRGraph, name: str, **fields: Any) -> nir.NIRGraph:
    """``graph`` with LIF ``name`` rebuilt with some fields replaced."""
    node = graph.nodes[name]
    kwargs = {k: getattr(node, k) for k in ("tau", "r", "v_leak", "v_threshold", "v_reset")}
    nodes = {**graph.nodes, name: nir.LIF(**{**kwargs, **fields})}
    return nir.NIRGraph(nodes=nodes, edges=graph.edges, metadata=graph.metadata)


def test_graphs_lava_cannot_express_are_refused_before_running():
    g = two_layer_graph()
    with pytest.raises(StacError, match="lif: Lava's LIF resets to 0, v_reset is not 0"):
        plan_from_graph(_edit(g, "lif", v_reset=np.full(20, 0.1)), FMT)
    sub = _edit(g, "lif")
    sub.nodes["lif"].metadata = {"reset": "subtract"}
    with pytest.raises(StacError, match="not by subtract"):
        plan_from_graph(sub, FMT)
    with pytest.raises(StacError, match=r"lif: decays du = 4095, dv = 4096 do not fit 12 bits"):
        plan_from_graph(_edit(g, "lif", tau=np.full(20, 1e-3)), FMT)
    direct = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([20])),
            "lif": g.nodes["lif"],
            "out": nir.Output(np.array([20])),
        },
        edges=[("in", "lif"), ("lif", "out")],
        metadata={"dt": 1e-3},
    )
    with pytest.raises(StacError, match="driven only through Linear/Affine"):
        plan_from_graph(direct, FMT)
    with pytest.raises(StacError, match=r"cannot emit 1 node\(s\): th \(Threshold\)"):
        plan_from_graph(
            nir.NIRGraph(
                nodes={**g.nodes, "th": nir.Threshold(np.ones(5))},
                edges=g.edges + [("out_lif", "th")],
                metadata=g.metadata,
            ),
            FMT,
        )


def test_bad_spikes_and_a_profile_unlike_lavas_are_refused(tmp_path):
    plan, _ = case_dense_lif_random()
    with pytest.raises(StacError, match=r"must be \[T, 16\]"):
        run_plan_fixed(plan, np.zeros((10, 3), np.int64))
    with pytest.raises(StacError, match="must be 0 or 1"):
        run_plan_fixed(plan, np.full((10, 16), 2))
    text = (ROOT / "stac" / "hw_profiles" / "loihi2.toml").read_text()
    path = tmp_path / "odd.toml"
    # the [fixed_point] width changes, the [lava] one (Lava's model) stays
    path.write_text(
        text.replace('name = "loihi2"', 'name = "odd"').replace(
            "decay_bits = { value = 12,", "decay_bits = { value = 10,", 1
        )
    )
    with pytest.raises(StacError, match=r"decay_bits = 10 \(Lava: 12\)"):
        lava_format(load_profile_file(path))
    # a profile without the [lava] section is refused naming the field it lacks
    with pytest.raises(StacError, match=r"loihi1 .* has no field 'lava.state_bits'"):
        lava_format(load_profile("loihi1"))


def test_without_lava_the_backend_says_how_to_install_it():
    script = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "sys.modules['lava'] = None\n"
        "from stac.backends import resolve_target\n"
        "from stac.errors import StacError\n"
        "from test_lava import two_layer_graph\n"
        "profile, backend = resolve_target('loihi2-lava')\n"
        "try:\n    backend.lower(two_layer_graph(), profile)\n"
        "except StacError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert "needs Lava (lava-nc), which is not installed" in out.stdout, out.stderr[-2000:]
    assert "scripts/setup_lava.sh" in out.stdout


if __name__ == "__main__":
    record()


def _sleep_forever() -> None:
    threading.Event().wait()


def test_a_stop_lava_never_acknowledges_ends_that_runs_processes(monkeypatch, caplog):
    """A lost stop handshake (seen with Lava 0.10 in CI) must not hang the caller: after the
    timeout the processes the run started are killed, and earlier ones are left alone."""
    import multiprocessing

    from stac.backends.lava import backend

    ctx = multiprocessing.get_context("fork")
    earlier = ctx.Process(target=_sleep_forever, daemon=True)
    earlier.start()
    before = set(multiprocessing.active_children())
    started = ctx.Process(target=_sleep_forever, daemon=True)
    started.start()

    class Hangs:
        def stop(self) -> None:
            threading.Event().wait()

    monkeypatch.setattr(backend, "STOP_TIMEOUT_S", 0.5)
    with caplog.at_level("WARNING", logger="stac.backends.lava.backend"):
        backend._stop(Hangs(), "layer0_qkv_in", before)
    assert not started.is_alive() and earlier.is_alive()
    assert (
        "did not stop within 0.5 s" in caplog.text and "terminating its 1 processes" in caplog.text
    )
    earlier.kill()
    earlier.join(5)
