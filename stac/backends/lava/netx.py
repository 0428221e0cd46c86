"""Export a chain of Dense + LIF layers as a lava-dl netx HDF5 file, and run one in Lava.

netx (``lava.lib.dl.netx.hdf5.Network``) describes a feed-forward stack: an ``input`` layer
(its shape) followed by ``dense`` layers, each a weight matrix and a ``CUBA`` neuron
(``iDecay`` = Lava's du + 1, ``vDecay`` = dv, ``vThMant`` = vth, ``bias`` = the bias mantissa,
which netx always reads at exponent 6). It stores no weight exponent: netx derives one from
the integer weights (``optimize_weight_bits``). So a plan is exportable when it is a chain
(one Input, each LIF layer fed by one Dense from the layer before, one Output on the last),
its Dense layers use ``weight_exp`` 0 and its biases exponent 6; lower the graph with
``plan_from_graph(graph, fmt, weight_exp=0, bias_exp=limits.netx_bias_exp)`` for that. netx cannot
express recurrent or branching graphs, CubaLIF-specific input weights beyond du, or other
exponents, and the export refuses them naming the layer.

The file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from stac.backends.lava.backend import INSTALL_HINT, _lava
from stac.backends.lava.plan import LoihiPlan, spike_inputs
from stac.errors import StacError


def chain_order(plan: LoihiPlan, bias_exp: int) -> list[str]:
    """The LIF layers of a chain plan, first to last; a StacError names what breaks the chain.
    ``bias_exp`` is the exponent netx reads every bias at (the profile's
    ``lava.netx_bias_exp``)."""
    problems = []
    if len(plan.inputs) != 1:
        problems.append(f"netx has one input, the graph has {len(plan.inputs)}")
    if len(plan.outputs) != 1:
        problems.append(f"netx has one output, the graph has {len(plan.outputs)}")
    feeds: dict[str, str] = {}  # source layer -> LIF layer it feeds
    for name, layer in plan.neurons.items():
        if len(layer.inputs) != 1:
            problems.append(f"{name}: fed by {len(layer.inputs)} Dense layers (netx: one)")
            continue
        dense = plan.dense[layer.inputs[0]]
        if dense.weight_exp != 0:
            problems.append(
                f"{layer.inputs[0]}: weight_exp {dense.weight_exp} (netx stores "
                "none; lower with weight_exp=0)"
            )
        if dense.source in feeds:
            problems.append(
                f"{dense.source}: feeds {feeds[dense.source]} and {name} (netx is a chain)"
            )
        feeds[dense.source] = name
        if np.any(layer.bias_exp != bias_exp) and np.any(layer.bias_mant):
            problems.append(
                f"{name}: bias exponents other than {bias_exp} (lower with bias_exp={bias_exp})"
            )
    order: list[str] = []
    cur = next(iter(plan.inputs), None)
    while cur in feeds and len(order) <= len(plan.neurons):
        cur = feeds[cur]
        order.append(cur)
    if not problems and (
        len(order) != len(plan.neurons) or next(iter(plan.outputs.values())) != order[-1]
    ):
        problems.append("the layers do not form one chain from the input to the output")
    if problems:
        raise StacError(f"cannot export to netx: {'; '.join(problems)}")
    return order


def export_netx(plan: LoihiPlan, path: str | Path, bias_exp: int) -> Path:
    """Write ``plan`` as a netx HDF5 file at ``path`` (atomically); return the path.
    ``bias_exp``: the profile's ``lava.netx_bias_exp``, the exponent netx reads biases at."""
    order = chain_order(plan, bias_exp)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            layers = f.create_group("layer")
            first = layers.create_group("0")
            first.create_dataset("type", data=np.bytes_("input"))
            first.create_dataset("shape", data=np.array([next(iter(plan.inputs.values()))]))
            for i, name in enumerate(order, start=1):
                lif = plan.neurons[name]
                g = layers.create_group(str(i))
                g.create_dataset("type", data=np.bytes_("dense"))
                g.create_dataset("shape", data=np.array([lif.size]))
                g.create_dataset("weight", data=plan.dense[lif.inputs[0]].weights)
                if np.any(lif.bias_mant):
                    g.create_dataset("bias", data=lif.bias_mant)
                n = g.create_group("neuron")
                n.create_dataset("type", data=np.bytes_("CUBA"))
                n.create_dataset("iDecay", data=lif.du + 1)
                n.create_dataset("vDecay", data=lif.dv)
                n.create_dataset("vThMant", data=lif.vth)
                n.create_dataset("refDelay", data=1)
                n.create_dataset("gradedSpike", data=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _netx() -> Any:
    _lava()
    try:
        return importlib.import_module("lava.lib.dl.netx.hdf5")
    except ImportError as exc:
        raise StacError(
            f"netx needs lava-dl, which does not import here ({exc}); {INSTALL_HINT}"
        ) from None


def netx_available() -> bool:
    """True when lava-dl's netx imports."""
    try:
        _netx()
    except StacError:
        return False
    return True


def run_netx(
    path: str | Path, spikes: np.ndarray, steps: int | None = None
) -> list[dict[str, np.ndarray]]:
    """Load a netx file with ``hdf5.Network`` and run it in Lava (fixed_pt) on binary spikes
    ``[T, n]``; per dense layer ``{"spikes", "v", "u"}`` as ``[steps, size]`` int64."""
    lava, hdf5 = _lava(), _netx()
    net = hdf5.Network(net_config=str(path))
    n_in = int(np.prod(net.inp.shape))
    plan_like = LoihiPlan({"in": n_in}, {}, {}, {}, None)  # type: ignore[arg-type]
    x = spike_inputs(plan_like, spikes)["in"]
    steps = x.shape[0] if steps is None else int(steps)
    data = np.zeros((n_in, steps), dtype=np.int64)
    data[:, : min(steps, x.shape[0])] = x[:steps].T
    source = lava["RingBuffer"](data=data)
    source.s_out.connect(net.inp)
    monitors = []
    for layer in net.layers:
        mons = {k: lava["Monitor"]() for k in ("v", "u", "s_out")}
        for key, mon in mons.items():
            mon.probe(getattr(layer.neuron, key), steps)
        monitors.append((layer.neuron, mons))
    try:
        net.run(
            condition=lava["RunSteps"](num_steps=steps),
            run_cfg=lava["Loihi2SimCfg"](select_tag="fixed_pt"),
        )
        out = []
        for neuron, mons in monitors:
            got = {
                k: np.asarray(m.get_data()[neuron.name][k]).astype(np.int64)
                for k, m in mons.items()
            }
            out.append({"spikes": got["s_out"], "v": got["v"], "u": got["u"]})
    finally:
        net.stop()
    return out


__all__ = ["chain_order", "export_netx", "netx_available", "run_netx"]
