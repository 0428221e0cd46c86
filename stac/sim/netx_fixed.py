"""Bit-accurate runner for graphs read from netx files, as Lava runs ``netx.hdf5.Network``
(``Loihi2SimCfg(select_tag="fixed_pt")``).

The graph is a chain (:func:`stac.ir.netx_io.read_netx`). Per node and timestep:

- ``Input``: the step's integers (binary spikes when the first synapse takes them directly).
- ``Linear`` (netx dense): Lava's fixed-point Dense (:func:`stac.sim.loihi.dense_fixed_step`,
  Lava's own 32-bit behaviour, ``strict=False``) on the file's weights shifted left by netx's
  ``scale_bits`` with ``weight_exp = -scale_bits`` (``metadata["netx"]``); binary or graded
  by the message bits of the layer before it.
- ``Conv2d`` / ``SumPool2d``: Lava's fixed-point Conv: the exact correlation of the input
  (``!= 0`` when binary) with the integer kernel, wrapped to Lava's Conv width (``a_buf``,
  ``signed_clamp(bits=24)`` in lava-nc ``src/lava/proc/conv/models.py``; the profile's
  ``lava.state_bits``). A sum pool is a depthwise kernel of ones.
- Dense and Conv deliver their accumulation one step late (zeros at the first step), as
  Lava's do; ``Flatten`` reorders nothing (CHW, as netx flattens).
- ``LoihiCubaLIF``: :func:`stac.sim.loihi.lif_fixed_step`; ``SigmaDelta``:
  :func:`stac.sim.sigma_delta.sigma_delta_step`.

:class:`NetxRunner` returns a :class:`stac.sim.stepper.StepResult` (int64 tensors
``[T, B, *shape]``) with the same counts the step executor keeps: per neuron its updates,
spikes (nonzero payloads; a sigma readout sends none) and the bits they carry; per synapse the
events that reach it times their fan-out.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import nir
import numpy as np
import torch
import torch.nn.functional as F

from stac.errors import StacError
from stac.ir.graph import input_shape, output_shape, predecessors, topo_order
from stac.ir.nodes.loihi_cuba import LoihiCubaLIF
from stac.ir.nodes.sigma_delta import SigmaDelta
from stac.profiles import Profile
from stac.sim.executor import Executor, check_supported, lookup
from stac.sim.fixed_point import LoihiFormat, wrap_signed
from stac.sim.loihi import (
    dense_fixed_step,
    dense_initial_state,
    dense_params,
    lif_fixed_step,
    lif_initial_state,
)
from stac.sim.semantics import NodeStats
from stac.sim.sigma_delta import (
    cuba_params,
    sigma_delta_initial_state,
    sigma_delta_params,
    sigma_delta_step,
)
from stac.sim.stepper import StepResult

Tensor = torch.Tensor
#: step(x, state) -> (output, state); one per node, built once.
Step = Callable[[Tensor, Any], tuple[Tensor, Any]]


@dataclass(frozen=True)
class NetxWidths:
    """The widths of Lava's Python models a netx run depends on (the profile's ``[lava]``)."""

    message_bits: int  # int32 arrays: sigma-delta state, Dense a_buff, ports
    conv_bits: int  # Lava's Conv accumulation (a_buf), the neuron state width

    @classmethod
    def from_profile(cls, profile: Profile) -> "NetxWidths":
        lava = profile.values.get("lava") or {}
        missing = [k for k in ("message_bits", "state_bits") if k not in lava]
        if missing:
            raise StacError(
                f"hardware profile {profile.name} ({profile.path}) has no field(s) "
                f"{', '.join('lava.' + k for k in missing)}, needed to run a netx "
                "network bit-accurately"
            )
        return cls(int(lava["message_bits"]), int(lava["state_bits"]))


def _netx(name: str, node: Any, key: str) -> Any:
    meta = (node.metadata or {}).get("netx") or {}
    if key not in meta:
        raise StacError(
            f"node {name!r} ({type(node).__name__}) has no metadata netx.{key}: "
            "the netx runner runs graphs read by stac.ir.netx_io.read_netx"
        )
    return meta[key]


def _int_kernel(name: str, node: Any) -> tuple[Tensor, dict[str, Any]]:
    """A Conv2d's or SumPool2d's integer kernel and its geometry, for F.conv2d."""

    def two(v: Any) -> tuple[int, int]:
        a = np.broadcast_to(np.asarray(v).reshape(-1), (2,))
        return int(a[0]), int(a[1])

    if isinstance(node, nir.SumPool2d):
        c = int(input_shape(node)[0])
        k = two(node.kernel_size)
        return torch.ones((c, 1, *k), dtype=torch.float64), {
            "stride": two(node.stride),
            "padding": two(node.padding),
            "groups": c,
        }
    w = np.asarray(node.weight, dtype=np.float64)
    if np.any(w != np.rint(w)):
        raise StacError(
            f"node {name!r} (Conv2d) has non-integer weights; the netx runner "
            "runs the integers of a netx file"
        )
    return torch.from_numpy(w), {
        "stride": two(node.stride),
        "padding": two(node.padding),
        "dilation": two(node.dilation),
        "groups": int(node.groups),
    }


Built = tuple[Step, Callable[[int], Any]]  # (step, initial state for a batch) of one node


def _sigma_delta(runner: "NetxRunner", _name: str, node: SigmaDelta) -> Built:
    shape = output_shape(node)
    sp = sigma_delta_params(node, runner.widths.message_bits)
    return (
        lambda x, s: sigma_delta_step(x, s, sp),
        lambda b: sigma_delta_initial_state((b, *shape)),
    )


def _cuba(runner: "NetxRunner", _name: str, node: LoihiCubaLIF) -> Built:
    shape = output_shape(node)
    lp, fmt = cuba_params(node), runner.fmt

    def lif(x: Tensor, s: Any) -> tuple[Tensor, Any]:
        spikes, s = lif_fixed_step(x, s, lp, fmt)
        return spikes.to(torch.int64), s

    return lif, lambda b: lif_initial_state((b, *shape))


def _dense(runner: "NetxRunner", name: str, node: nir.Linear) -> Built:
    shape = output_shape(node)
    bits = int(_netx(name, node, "scale_bits"))
    w = torch.from_numpy(np.rint(np.asarray(node.weight, np.float64)).astype(np.int64))
    dp = dense_params(
        w << bits,
        -bits,
        int(_netx(name, node, "input_message_bits")) > 0,
        runner.fmt,
        num_weight_bits=int(_netx(name, node, "num_weight_bits")),
    )
    fmt = runner.fmt
    return (
        lambda x, s: dense_fixed_step(x, s, dp, fmt, strict=False),
        lambda b: dense_initial_state((b, *shape)),
    )


def _conv(runner: "NetxRunner", name: str, node: nir.Conv2d | nir.SumPool2d) -> Built:
    shape = output_shape(node)
    kernel, geometry = runner.kernels[name]
    graded = int(_netx(name, node, "input_message_bits")) > 0
    bits = runner.widths.conv_bits

    def conv(x: Tensor, a_buf: Tensor) -> tuple[Tensor, Tensor]:
        s = x if graded else (x != 0).to(torch.int64)
        acc = F.conv2d(s.to(torch.float64), kernel, None, **geometry)
        return a_buf, wrap_signed(torch.round(acc).to(torch.int64), bits)

    return conv, lambda b: torch.zeros((b, *shape), dtype=torch.int64)


def _flatten(_runner: "NetxRunner", _name: str, _node: nir.Flatten) -> Built:
    return (lambda x, s: (x.reshape(x.shape[0], -1), s)), lambda _b: None


def _port(_runner: "NetxRunner", _name: str, _node: Any) -> Built:
    return (lambda x, s: (x, s)), lambda _b: None


#: Node type -> builder of its bit-accurate step (the netx runner's step table).
NETX_STEPS: dict[type, Callable[..., Built]] = {
    SigmaDelta: _sigma_delta,
    LoihiCubaLIF: _cuba,
    nir.Linear: _dense,
    nir.Conv2d: _conv,
    nir.SumPool2d: _conv,
    nir.Flatten: _flatten,
    nir.Input: _port,
    nir.Output: _port,
}
WHAT = "the netx runner"


class NetxRunner:
    """Runs a graph read from a netx file bit-accurately; ``profile`` gives the widths.

    One sweep of the executor core (:class:`stac.sim.executor.Executor`) per timestep, with
    each node's step looked up in :data:`NETX_STEPS`."""

    def __init__(self, graph: nir.NIRGraph, profile: Profile) -> None:
        check_supported(graph.nodes, NETX_STEPS, WHAT)
        self.graph, self.fmt = graph, LoihiFormat.from_profile(profile)
        self.widths = NetxWidths.from_profile(profile)
        order = topo_order(graph)
        self.core = Executor(graph.nodes, order, predecessors(graph))
        for name in order:
            if len(self.core.pre[name]) > 1:
                raise StacError(
                    f"node {name!r} has {len(self.core.pre[name])} inputs; a netx network is a "
                    "chain"
                )
        self.inputs = [n for n in order if isinstance(graph.nodes[n], nir.Input)]
        if len(self.inputs) != 1:
            raise StacError(f"a netx network has one input, this graph has {len(self.inputs)}")
        self.kernels = {
            n: _int_kernel(n, v)
            for n, v in graph.nodes.items()
            if isinstance(v, (nir.Conv2d, nir.SumPool2d))
        }
        self.steps: dict[str, Built] = {
            n: lookup(NETX_STEPS, n, v, WHAT)(self, n, v) for n, v in graph.nodes.items()
        }

    def _as_input(self, x: Any) -> Tensor:
        shape = input_shape(self.graph.nodes[self.inputs[0]])
        t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
        if t.is_floating_point():
            if not bool(torch.all(t == torch.round(t))):
                raise StacError("a netx network runs on integers; the input has fractions")
        t = t.to(torch.int64)
        per = int(np.prod(shape))
        if t.ndim >= 1 and t[0].numel() == per:
            return t.reshape(t.shape[0], 1, *shape)
        if t.ndim >= 2 and t[0, 0].numel() == per:
            return t.reshape(t.shape[0], t.shape[1], *shape)
        raise StacError(
            f"input has shape {tuple(t.shape)}; expected [T, {shape}] or [T, B, {shape}]"
        )

    @torch.no_grad()
    def run(self, x: Any, steps: int | None = None, record: str = "neurons") -> StepResult:
        """Run on integer input ``[T, *shape]`` or ``[T, B, *shape]``; ``steps`` truncates or
        pads with zeros. ``record``: "neurons" or "all"."""
        xs = self._as_input(x)
        t_in, batch = int(xs.shape[0]), int(xs.shape[1])
        steps = t_in if steps is None else int(steps)
        g = self.graph
        neurons = {n for n, v in g.nodes.items() if isinstance(v, (SigmaDelta, LoihiCubaLIF))}
        keep = set(g.nodes) if record == "all" else neurons
        state = {n: init(batch) for n, (_, init) in self.steps.items()}
        stats = {n: NodeStats() for n in g.nodes}
        traces: dict[str, list[Tensor]] = {n: [] for n in keep}
        outputs: dict[str, list[Tensor]] = {
            n: [] for n in g.nodes if isinstance(g.nodes[n], nir.Output)
        }

        def run_node(t: int, name: str, node: Any, inputs: list[Tensor]) -> Tensor:
            if inputs:
                inp = inputs[0]
            else:  # the Input node: the step's drive, zeros past its end
                inp = xs[t] if t < t_in else torch.zeros_like(xs[0])
            out, state[name] = self.steps[name][0](inp, state[name])
            self._count(name, node, inp, out, stats[name])
            if name in keep:
                traces[name].append(out)
            if name in outputs:
                outputs[name].append(out)
            return out

        for t in range(steps):
            self.core.sweep(partial(run_node, t), free=True)
        stack = {
            n: torch.stack(v) if v else torch.zeros((0, batch), dtype=torch.int64)
            for n, v in {**traces, **outputs}.items()
        }
        return StepResult({n: stack[n] for n in outputs}, {n: stack[n] for n in traces}, stats)

    def _count(self, name: str, node: Any, inp: Tensor, out: Tensor, s: NodeStats) -> None:
        if isinstance(node, (SigmaDelta, LoihiCubaLIF)):
            s.neuron_updates += out.numel()
            if not (isinstance(node, SigmaDelta) and not node.delta):
                events = int(torch.count_nonzero(out))
                bits = int(_netx(name, node, "message_bits"))
                s.spikes += events
                s.spike_bits += events * max(bits, 1)
        elif isinstance(node, nir.Linear):
            s.synops += int(torch.count_nonzero(inp)) * int(np.asarray(node.weight).shape[0])
        elif isinstance(node, (nir.Conv2d, nir.SumPool2d)):
            kernel, geometry = self.kernels[name]
            mask = (inp != 0).to(torch.float64)
            s.synops += int(F.conv2d(mask, torch.ones_like(kernel), None, **geometry).sum())


__all__ = ["NetxRunner", "NetxWidths"]
