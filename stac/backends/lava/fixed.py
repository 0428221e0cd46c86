"""stac's bit-accurate runs of what the Lava backend emits, on stac's executor core.

Both runs are sweeps of :class:`stac.sim.executor.Executor` with a fixed-point step table
(:mod:`stac.sim.loihi` for Loihi's LIF, Dense and Sigma, :mod:`stac.sim.neurons` for the
signed IF encoder), so they share the order / input / dispatch logic of the float executors:

* a :class:`~stac.backends.lava.plan.LoihiPlan` (Dense + LIF layers) runs one sweep per
  timestep in the order Input, LIF layers, Dense layers. Every Dense -> LIF edge is a back edge:
  a LIF reads what the Dense accumulated in the *previous* step, which is Lava's one-step
  synaptic delay (so recurrent plans need nothing special);
* a converted block (:class:`~stac.backends.lava.blocks.EncoderBlock`) runs one sweep over all
  its steps: the encoder, then one Dense + Sigma readout per map, channel group and payload
  part, each computed for every step at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numpy as np
import torch

from stac.backends.lava.blocks import (
    BlockTrace,
    DenseBlock,
    EncoderBlock,
    readout_key,
    split_payload,
)
from stac.backends.lava.plan import DenseLayer, LIFLayer, LoihiPlan, spike_inputs
from stac.sim import fixed_point as fx
from stac.sim import loihi
from stac.sim.executor import Executor, lookup, total
from stac.sim.neurons import SignedIFFixedState, signed_if_fixed_step


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.int64)


# --- a converted block -------------------------------------------------------------------------


@dataclass(frozen=True)
class Readout:
    """One map's Dense + Sigma for one channel group and payload part of a block."""

    dense: DenseBlock
    group: int
    part: int


def encoder_fixed(
    block: EncoderBlock, drive: np.ndarray, steps: int, fmt: fx.LoihiFormat
) -> tuple[np.ndarray, np.ndarray]:
    """The encoder over ``drive`` ``[S, n]``, reset at every token's first step: (v, payload
    ``s * mult``, whole; a split block sends it in parts)."""
    theta = torch.full((block.size,), block.chip_theta, dtype=torch.int64)
    mult = _t(block.mult())
    state = SignedIFFixedState(torch.zeros(block.size, dtype=torch.int64))
    dead = None if block.dead is None else _t(block.dead)
    vs, ps = [], []
    for t, x in enumerate(_t(drive)):
        if t % steps == 0:
            state = SignedIFFixedState(torch.zeros_like(state.v))
        s, state = signed_if_fixed_step(x, state, theta, fmt, block.max_payload, dead)
        vs.append(state.v)
        ps.append(s * mult)
    return torch.stack(vs).numpy(), torch.stack(ps).numpy()


def dense_sigma_fixed(weights: np.ndarray, weight_exp: int, payload: np.ndarray) -> np.ndarray:
    """Lava's graded Dense (:func:`stac.sim.loihi.dense_accumulate`, sent one step later)
    into a Sigma readout (:func:`stac.sim.loihi.sigma_accumulate`): the readout after each step
    ``[S, out]``."""
    acc = loihi.dense_accumulate(_t(payload), _t(weights), weight_exp, graded=True)
    return loihi.sigma_accumulate(loihi.delayed(acc)).numpy()


def width_counts(trace: BlockTrace, fmt: fx.LoihiFormat) -> tuple[int, int]:
    """(Dense outputs beyond ``input_bits``, readouts beyond ``state_bits``) of a run, from
    every readout after each step (a step's Dense output is the readout's change), counted by
    the one overflow rule, :func:`stac.sim.loihi.out_of_width`."""
    over_in = over_state = 0
    for sigma in trace.sigma.values():
        sent = fx.wrap_signed(_t(np.diff(sigma, axis=0, prepend=0)), 32)
        over_in += loihi.out_of_width(sent, fmt.input_bits)
        over_state += loihi.out_of_width(_t(sigma), fmt.state_bits)
    return over_in, over_state


def run_block_fixed(
    block: EncoderBlock, drive: np.ndarray, steps: int, fmt: fx.LoihiFormat
) -> BlockTrace:
    """One block with stac's bit-accurate steps, the timing of the Lava processes."""
    readouts = {
        readout_key(d.name, i, j): Readout(d, i, j)
        for d in block.dense
        for i in range(len(block.groups))
        for j in range(block.parts)
    }
    core = Executor.from_edges(
        {block.name: block, **readouts},
        [(block.name, key) for key in readouts],
        [block.name, *readouts],
    )

    def encoder(node: EncoderBlock, _inputs: list[Any]) -> tuple[np.ndarray, np.ndarray, list]:
        v, payload = encoder_fixed(node, drive, steps, fmt)
        return v, payload, split_payload(payload, node.split_bits, node.parts)

    def readout(node: Readout, inputs: list[Any]) -> np.ndarray:
        index = block.groups[node.group].index
        part = inputs[0][2][node.part]
        return dense_sigma_fixed(
            node.dense.weights[:, index], node.dense.weight_exp, part[:, index]
        )

    table: dict[type, Callable[..., Any]] = {EncoderBlock: encoder, Readout: readout}
    values = core.sweep(
        lambda name, node, inputs: lookup(table, name, node, "the fixed-point block run")(
            node, inputs
        )
    )
    v, payload, _ = values.pop(block.name)
    return BlockTrace(v, payload, values)


# --- a plan of Dense + LIF layers --------------------------------------------------------------


@dataclass(frozen=True)
class PlanInput:
    """An Input of a plan: binary spikes of ``size`` channels."""

    size: int


def run_plan_fixed(
    plan: LoihiPlan, spikes: Any, steps: int | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """Run ``plan`` with stac's fixed-point steps; per LIF layer ``{"spikes", "v", "u"}``,
    each ``[steps, size]`` int64, with Lava's timing (see the module docstring)."""
    xs = spike_inputs(plan, spikes)
    steps = next(iter(xs.values())).shape[0] if steps is None else int(steps)
    fmt = plan.fmt
    dparams = {
        n: loihi.dense_params(torch.as_tensor(d.weights), d.weight_exp, graded=False, fmt=fmt)
        for n, d in plan.dense.items()
    }
    lparams = {
        n: loihi.lif_params(
            layer.du,
            layer.dv,
            layer.vth,
            torch.as_tensor(layer.bias_mant),
            torch.as_tensor(layer.bias_exp),
            fmt=fmt,
        )
        for n, layer in plan.neurons.items()
    }
    lstate = {n: loihi.lif_initial_state((layer.size,)) for n, layer in plan.neurons.items()}
    trace: dict[str, dict[str, list[torch.Tensor]]] = {
        n: {"spikes": [], "v": [], "u": []} for n in plan.neurons
    }
    delays = [(d, n) for n, layer in plan.neurons.items() for d in layer.inputs]
    core = Executor.from_edges(
        {**{n: PlanInput(size) for n, size in plan.inputs.items()}, **plan.neurons, **plan.dense},
        [(d.source, n) for n, d in plan.dense.items()] + delays,
        [*plan.inputs, *plan.neurons, *plan.dense],
        back=delays,
    )

    def source(t: int, name: str, node: PlanInput, _inputs: list[torch.Tensor]) -> torch.Tensor:
        x = xs[name]
        return torch.as_tensor(x[t]) if t < len(x) else torch.zeros(node.size, dtype=torch.int64)

    def lif(_t: int, name: str, node: LIFLayer, inputs: list[torch.Tensor]) -> torch.Tensor:
        a_in = total(inputs, torch.zeros(node.size, dtype=torch.int64))
        s, lstate[name] = loihi.lif_fixed_step(a_in, lstate[name], lparams[name], fmt)
        rec = trace[name]
        rec["spikes"].append(s.to(torch.int64))
        rec["v"].append(lstate[name].v)
        rec["u"].append(lstate[name].u)
        return rec["spikes"][-1]

    def dense(_t: int, name: str, _node: DenseLayer, inputs: list[torch.Tensor]) -> torch.Tensor:
        p = dparams[name]
        acc = loihi.dense_accumulate(inputs[0], p.weights, p.weight_exp, p.graded)
        loihi.refuse_wide_dense(acc, fmt)
        return fx.wrap_signed(acc, 32)  # Lava sends it through an int32 channel

    table: dict[type, Callable[..., torch.Tensor]] = {
        PlanInput: source,
        LIFLayer: lif,
        DenseLayer: dense,
    }

    def run_node(t: int, name: str, node: Any, inputs: list[torch.Tensor]) -> torch.Tensor:
        return lookup(table, name, node, "the fixed-point plan run")(t, name, node, inputs)

    prev = {n: torch.zeros(d.weights.shape[0], dtype=torch.int64) for n, d in plan.dense.items()}
    for t in range(steps):
        prev = core.sweep(partial(run_node, t), prev)
    return {
        n: {
            k: torch.stack(v).numpy() if v else np.zeros((0, plan.neurons[n].size), np.int64)
            for k, v in tr.items()
        }
        for n, tr in trace.items()
    }


__all__ = [
    "PlanInput",
    "Readout",
    "dense_sigma_fixed",
    "encoder_fixed",
    "run_block_fixed",
    "run_plan_fixed",
    "width_counts",
]
