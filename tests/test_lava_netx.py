"""netx export: a NIR chain lowered for netx, written as HDF5, loaded by lava-dl's
``netx.hdf5.Network`` and run in Lava (fixed_pt), agrees bit for bit with stac's fixed-point run
of the same plan; what netx cannot express is refused by name."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from stac.backends.lava.backend import lava_format
from stac.backends.lava.fixed import run_plan_fixed
from stac.backends.lava.plan import plan_from_graph
from stac.backends.lava.config import LavaLimits
from stac.backends.lava.netx import export_netx, netx_available, run_netx
from stac.errors import StacError
from stac.profiles import load_profile

FMT = lava_format(load_profile("loihi2"))
NETX_BIAS_EXP = LavaLimits.from_profile(load_profile("loihi2")).netx_bias_exp
needs_netx = pytest.mark.skipif(
    not netx_available(), reason="lava-dl netx is not installed (bash scripts/setup_lava.sh)"
)


def chain_graph() -> nir.NIRGraph:
    """12 inputs -> Affine -> 16 LIF (per-neuron thresholds, leak) -> Linear -> 4 LIF."""
    rng = np.random.default_rng(11)
    nodes = {
        "in": nir.Input(input_type=np.array([12])),
        "fc1": nir.Affine(weight=rng.normal(0.1, 0.6, (16, 12)), bias=rng.normal(0, 0.05, 16)),
        "lif1": nir.LIF(
            tau=np.full(16, 4e-3),
            r=np.ones(16),
            v_leak=rng.uniform(0, 0.3, 16),
            v_threshold=rng.uniform(0.4, 1.2, 16),
            v_reset=np.zeros(16),
        ),
        "fc2": nir.Linear(weight=rng.normal(0.2, 0.5, (4, 16))),
        "lif2": nir.LIF(
            tau=np.full(4, 1e-2),
            r=np.ones(4),
            v_leak=np.zeros(4),
            v_threshold=np.full(4, 0.1),
            v_reset=np.zeros(4),
        ),
        "out": nir.Output(output_type=np.array([4])),
    }
    edges = [("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3})


def netx_plan():
    return plan_from_graph(chain_graph(), FMT, weight_exp=0, bias_exp=NETX_BIAS_EXP)


@needs_netx
def test_netx_file_loads_and_runs_bit_exact_with_stac(tmp_path):
    plan = netx_plan()
    assert any(np.any(lif.bias_mant) for lif in plan.neurons.values())
    path = export_netx(plan, tmp_path / "chain.net", NETX_BIAS_EXP)
    assert path.is_file() and not list(tmp_path.glob(".*tmp*"))
    spikes = (np.random.default_rng(2).random((150, 12)) < 0.3).astype(np.int64)
    got = run_netx(path, spikes)
    want = run_plan_fixed(plan, spikes)
    assert len(got) == 2
    for layer, name in zip(got, ("lif1", "lif2"), strict=False):
        assert int(want[name]["spikes"].sum()) > 0
        for key in ("spikes", "v", "u"):
            assert np.array_equal(layer[key], want[name][key]), (name, key)


def test_what_netx_cannot_express_is_refused(tmp_path):
    with pytest.raises(StacError, match=r"fc1: weight_exp 4 \(netx stores none"):
        export_netx(plan_from_graph(chain_graph(), FMT), tmp_path / "a.net", NETX_BIAS_EXP)
    g = chain_graph()
    branched = nir.NIRGraph(
        nodes={
            **g.nodes,
            "fc3": nir.Linear(weight=np.ones((4, 16))),
            "lif3": nir.LIF(
                tau=np.full(4, 1e-2),
                r=np.ones(4),
                v_leak=np.zeros(4),
                v_threshold=np.ones(4),
                v_reset=np.zeros(4),
            ),
            "out3": nir.Output(output_type=np.array([4])),
        },
        edges=g.edges + [("lif1", "fc3"), ("fc3", "lif3"), ("lif3", "out3")],
        metadata=g.metadata,
    )
    plan = plan_from_graph(branched, FMT, weight_exp=0, bias_exp=NETX_BIAS_EXP)
    with pytest.raises(StacError, match="lif1: feeds lif2 and lif3"):
        export_netx(plan, tmp_path / "b.net", NETX_BIAS_EXP)
    assert not list(tmp_path.iterdir())
