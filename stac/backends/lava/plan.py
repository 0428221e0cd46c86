r"""A chip graph as integer Loihi layers (Dense + CUBA LIF), independent of Lava.

The Lava backend (:mod:`stac.backends.lava.backend`) emits one Lava process per layer of a
:class:`LoihiPlan`; :func:`stac.backends.lava.fixed.run_plan_fixed` runs the same plan with
stac's bit-accurate step functions (:mod:`stac.sim.loihi`). Keeping the plan free of Lava is
what lets Lava be replaced (upstream is archived) and lets the equivalence tests compare the two
runs layer by layer.

From NIR (:func:`plan_from_graph`): ``Input`` (binary spikes), ``Linear`` / ``Affine`` (a
:class:`DenseLayer`), ``LIF`` / ``CubaLIF`` (a :class:`LIFLayer`) and ``Output``. A neuron's
input scaling is folded into the weights that feed it. With Euler steps of ``dt``, NIR's LIF
``tau dv/dt = (v_leak - v) + r I`` becomes Lava's
``v <- v (1 - dv/4096) + u + bias`` with ``u`` the (weighted) input of this step, so each
incoming weight is multiplied by ``r dt / tau`` and ``v_leak dt / tau`` is the bias; a CubaLIF
(``tau_syn dI/dt = -I + w_in x``) also decays ``u`` by ``dt / tau_syn`` and multiplies its
weights by ``w_in dt / tau_syn``. Voltages are then expressed per neuron in units of its own
threshold and mapped onto integers:

* ``x = w_eff / theta`` per row; one factor ``k`` per layer puts ``max |x|`` at the largest
  8-bit weight (255, or 254 on the even grid that mixed-sign weights keep in Lava);
* a Dense step of weight 1 adds ``2**(weight_exp + threshold_shift)`` to ``v``, so the threshold
  is ``vth = round(k * 2**weight_exp)``; ``weight_exp`` is the largest exponent in the format's
  range for which ``vth`` fits ``threshold_bits`` and the worst row of every incoming Dense fits
  the ``input_bits`` accumulator;
* ``du = round(4096 dt / tau_syn) - 1`` (Lava adds its ``ds_offset`` of 1; 4095 for a LIF,
  which clears the current every step), ``dv = round(4096 dt / tau_mem)``, and the bias in
  Loihi's mantissa / exponent format.

Lava's LIF resets ``v`` to 0 and holds one threshold per process, which is why every
threshold is absorbed into its row's weights; a ``v_reset`` other than 0 or a subtractive
reset is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

from stac.errors import StacError
from stac.ir.passes.quantise import decay_levels
from stac.quant import mantissa_exponent
from stac.sim import fixed_point as fx

#: NIR node types the plan has a layer for (Input and Output are the graph's ports).
DENSE_TYPES = (nir.Linear, nir.Affine)
NEURON_TYPES = (nir.LIF, nir.CubaLIF)
PORT_TYPES = (nir.Input, nir.Output)


@dataclass
class DenseLayer:
    """Lava ``Dense``: integer weights (``weight_bits`` magnitude + sign) and one exponent."""

    weights: np.ndarray  # [out, in] int64
    weight_exp: int  # the accumulation is shifted left by this (right when negative)
    source: str  # the Input or LIF layer whose spikes it reads


@dataclass
class LIFLayer:
    """Lava ``LIF`` with ``fixed_pt`` parameters (one du, dv, vth per process)."""

    size: int
    du: int  # current decay, du / 4096 per step plus Lava's ds_offset of 1
    dv: int  # voltage decay, dv / 4096 per step
    vth: int  # threshold mantissa; a spike when v > vth << threshold_shift
    bias_mant: np.ndarray  # [size] int64
    bias_exp: np.ndarray  # [size] int64
    inputs: list[str] = field(default_factory=list)  # DenseLayer names summed into a_in


@dataclass
class LoihiPlan:
    """Layers by name in a valid emission order, the Input sizes, and what each Output reads."""

    inputs: dict[str, int]  # Input node -> number of channels
    dense: dict[str, DenseLayer]
    neurons: dict[str, LIFLayer]
    outputs: dict[str, str]  # Output node -> LIF layer it reads
    fmt: fx.LoihiFormat


# --- refusing what cannot be emitted -----------------------------------------------------------


def unsupported_nodes(graph: nir.NIRGraph) -> list[str]:
    """``name (Type)`` of every node the plan has no layer for, in graph order."""
    known = DENSE_TYPES + NEURON_TYPES + PORT_TYPES
    return [f"{n} ({type(v).__name__})" for n, v in graph.nodes.items() if type(v) not in known]


def _structure_errors(graph: nir.NIRGraph) -> list[str]:
    """Edges and parameters Lava's Dense + LIF cannot express, one message per node."""
    pre: dict[str, list[str]] = {n: [] for n in graph.nodes}
    post: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        pre[dst].append(src)
        post[src].append(dst)
    errors = []
    for name, node in graph.nodes.items():
        if isinstance(node, DENSE_TYPES):
            if len(pre[name]) != 1 or not isinstance(
                graph.nodes[pre[name][0]], NEURON_TYPES + (nir.Input,)
            ):
                errors.append(
                    f"{name}: a Dense reads exactly one Input or neuron layer, got "
                    f"{pre[name] or 'none'}"
                )
            if len(post[name]) != 1 or not isinstance(graph.nodes[post[name][0]], NEURON_TYPES):
                errors.append(
                    f"{name}: a Dense feeds exactly one LIF/CubaLIF layer, got "
                    f"{post[name] or 'none'}"
                )
            if (
                isinstance(node, nir.Affine)
                and np.any(node.bias)
                and post[name]
                and isinstance(graph.nodes[post[name][0]], nir.CubaLIF)
            ):
                errors.append(f"{name}: an Affine bias into a CubaLIF has no Lava equivalent")
        elif isinstance(node, NEURON_TYPES):
            bad = [p for p in pre[name] if not isinstance(graph.nodes[p], DENSE_TYPES)]
            if bad or not pre[name]:
                errors.append(
                    f"{name}: a neuron layer is driven only through Linear/Affine "
                    f"nodes, got {pre[name] or 'none'}"
                )
            if np.any(node.v_reset):
                errors.append(f"{name}: Lava's LIF resets to 0, v_reset is not 0")
            if (node.metadata or {}).get("reset", "zero") != "zero":
                errors.append(f"{name}: Lava's LIF resets to zero, not by {node.metadata['reset']}")
            if np.any(np.asarray(node.v_threshold) <= 0):
                errors.append(f"{name}: thresholds must be positive")
        elif isinstance(node, nir.Output):
            if len(pre[name]) != 1 or not isinstance(graph.nodes[pre[name][0]], NEURON_TYPES):
                errors.append(
                    f"{name}: an Output reads one neuron layer's spikes, got {pre[name] or 'none'}"
                )
    return errors


def check_emittable(graph: nir.NIRGraph, target: str = "lava") -> None:
    """Raise one StacError naming every node ``target`` cannot emit, before anything runs."""
    unknown = unsupported_nodes(graph)
    if unknown:
        raise StacError(
            f"the {target} backend cannot emit {len(unknown)} node(s): {', '.join(unknown)}; "
            f"it emits {', '.join(t.__name__ for t in DENSE_TYPES + NEURON_TYPES)} between "
            "Input (binary spikes) and Output nodes"
        )
    errors = _structure_errors(graph)
    if errors:
        raise StacError(f"the {target} backend cannot emit this graph: {'; '.join(errors)}")


# --- NIR -> integer layers ---------------------------------------------------------------------


def _neuron_factors(
    node: Any, dt: float, fmt: fx.LoihiFormat
) -> tuple[np.ndarray, int, int, np.ndarray]:
    """(input factor per neuron, du, dv, bias in voltage units per neuron)."""
    unity = 1 << fmt.decay_bits
    size = int(np.asarray(node.v_threshold).size)
    ones = np.ones(size)
    if isinstance(node, nir.CubaLIF):
        tau_mem, d_syn = np.asarray(node.tau_mem) * ones, dt / (np.asarray(node.tau_syn) * ones)
        factor = np.asarray(node.r) * dt / tau_mem * np.asarray(node.w_in) * d_syn
        du_all = decay_levels(dt, np.asarray(node.tau_syn) * ones, fmt.decay_bits) - 1
    else:
        tau_mem = np.asarray(node.tau) * ones
        factor = np.asarray(node.r) * dt / tau_mem * ones
        du_all = np.full(size, unity - 1.0)
    dv_all = decay_levels(dt, tau_mem, fmt.decay_bits)
    if np.ptp(du_all) or np.ptp(dv_all):
        raise StacError(
            "a Lava LIF process has one du and one dv; this layer's time constants "
            "differ between neurons"
        )
    du, dv = int(du_all[0]), int(dv_all[0])
    if not (0 <= du < unity and 0 <= dv < unity):
        raise StacError(
            f"decays du = {du}, dv = {dv} do not fit {fmt.decay_bits} bits: "
            f"dt / tau_mem must be below 1 and dt / tau_syn at least 1/{unity}"
        )
    bias = np.asarray(node.v_leak) * dt / tau_mem * ones
    return factor * ones, du, dv, bias


def _choose_exponent(
    name: str, k: float, rows: list[np.ndarray], fmt: fx.LoihiFormat, fixed: int | None = None
) -> int:
    """Largest weight_exp (or ``fixed``) for which vth = round(k 2**e) and every row's worst
    sum fit."""
    worst = max((int(np.abs(w).sum(axis=1).max()) for w in rows if w.size), default=0)
    choices = range(fmt.weight_exp_max, fmt.weight_exp_min - 1, -1) if fixed is None else [fixed]
    for e in choices:
        vth = round(k * 2.0**e)
        acc = worst * 2.0**e
        if 1 <= vth < (1 << fmt.threshold_bits) and acc < (1 << (fmt.input_bits - 1)):
            return e
    raise StacError(
        f"{name}: no weight_exp in {list(choices)} fits "
        f"its threshold in {fmt.threshold_bits} bits and its input in "
        f"{fmt.input_bits} bits"
    )


def _bias(
    name: str, bias: np.ndarray, fmt: fx.LoihiFormat, fixed_exp: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Bias in voltage units as Loihi's (mantissa, exponent); ``fixed_exp`` pins the exponent
    (lava-dl's netx always uses 6)."""
    top = 1 << (fmt.bias_mantissa_bits - 1)
    if fixed_exp is None:
        mant, exp, sat = mantissa_exponent(bias, fmt.bias_mantissa_bits, fmt.bias_exp_bits)
    else:
        mant = np.rint(bias / 2.0**fixed_exp)
        sat, exp = np.abs(mant) > top - 1, np.full(bias.shape, fixed_exp)
    if np.any(sat):
        raise StacError(
            f"{name}: {int(np.sum(sat))} bias value(s) exceed Loihi's "
            f"{fmt.bias_mantissa_bits}-bit mantissa"
        )
    return np.asarray(mant, np.int64), np.asarray(exp, np.int64)


def plan_from_graph(
    graph: nir.NIRGraph,
    fmt: fx.LoihiFormat,
    dt: float | None = None,
    weight_exp: int | None = None,
    bias_exp: int | None = None,
) -> LoihiPlan:
    """Integer layers for a NIR-style chip graph (see the module docstring for the maths).

    ``weight_exp`` and ``bias_exp`` pin the exponents instead of choosing them (lava-dl's netx
    format stores neither: it reads weights at exponent 0 and biases at exponent 6)."""
    check_emittable(graph)
    dt = graph.metadata.get("dt") if dt is None else dt
    if dt is None or not float(dt) > 0:
        raise StacError("the graph has no time step: give dt or set metadata['dt']")
    dt = float(dt)
    pre: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        pre[dst].append(src)
    plan = LoihiPlan({}, {}, {}, {}, fmt)
    wmax = (1 << fmt.weight_bits) - 1
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Input):
            plan.inputs[name] = int(np.prod(node.input_type["input"]))
        elif isinstance(node, nir.Output):
            plan.outputs[name] = pre[name][0]
    for name, node in graph.nodes.items():
        if not isinstance(node, NEURON_TYPES):
            continue
        try:
            factor, du, dv, bias = _neuron_factors(node, dt, fmt)
        except StacError as exc:
            raise StacError(f"{name}: {exc}") from None
        theta = np.asarray(node.v_threshold, dtype=np.float64).reshape(-1) * np.ones_like(factor)
        xs = {}
        for d in pre[name]:
            dn = graph.nodes[d]
            w = np.asarray(dn.weight, dtype=np.float64).reshape(len(theta), -1)
            xs[d] = w * (factor / theta)[:, None]
            if isinstance(dn, nir.Affine):
                bias = bias + np.asarray(dn.bias, dtype=np.float64) * factor
        mixed = {d: bool((x < 0).any() and (x > 0).any()) for d, x in xs.items()}
        top = min((wmax - 1 if mixed[d] else wmax) for d in xs)
        m = max((float(np.abs(x).max()) for x in xs.values()), default=0.0)
        k = top / m if m > 0 else 1.0
        ints = {
            d: (2 * np.rint(x * k / 2) if mixed[d] else np.rint(x * k)).astype(np.int64)
            for d, x in xs.items()
        }
        e = _choose_exponent(name, k, list(ints.values()), fmt, weight_exp)
        vth = int(round(k * 2.0**e))
        # A weight of 1 adds 2**(e + shift) to v, and v = theta maps to vth << shift.
        volt_unit = float(vth) * 2.0**fmt.threshold_shift / theta
        mant, exp = _bias(name, bias * volt_unit, fmt, bias_exp)
        for d, w in ints.items():
            plan.dense[d] = DenseLayer(w, e, pre[d][0])
        plan.neurons[name] = LIFLayer(len(theta), du, dv, vth, mant, exp, list(pre[name]))
    return plan


# --- the inputs of a run -----------------------------------------------------------------------


def spike_inputs(plan: LoihiPlan, spikes: Any) -> dict[str, np.ndarray]:
    """``[T, n]`` binary arrays by Input name (one Input may be given as a bare array)."""
    if not isinstance(spikes, dict):
        if len(plan.inputs) != 1:
            raise StacError(
                f"the plan has {len(plan.inputs)} inputs; pass spikes by name "
                f"({', '.join(plan.inputs)})"
            )
        spikes = {next(iter(plan.inputs)): spikes}
    out = {}
    for name, size in plan.inputs.items():
        if name not in spikes:
            raise StacError(f"no spikes given for Input {name!r}")
        s = np.asarray(spikes[name])
        if s.ndim != 2 or s.shape[1] != size:
            raise StacError(f"spikes for {name!r} must be [T, {size}], got {list(s.shape)}")
        if not np.isin(s, (0, 1)).all():
            raise StacError(f"spikes for {name!r} must be 0 or 1 (binary spikes)")
        out[name] = s.astype(np.int64)
    if len({s.shape[0] for s in out.values()}) > 1:
        raise StacError("the inputs have different numbers of steps")
    return out


__all__ = [
    "DenseLayer",
    "LIFLayer",
    "LoihiPlan",
    "check_emittable",
    "plan_from_graph",
    "spike_inputs",
    "unsupported_nodes",
]
