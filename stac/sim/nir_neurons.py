r"""Discrete-time semantics of NIR's node types: pure step functions over explicit state.

NIR is continuous-time. stac discretises it with forward Euler at a fixed step ``dt`` (seconds,
``graph.metadata["dt"]``), in the order the reference platforms use (snnTorch, Norse, the NIR
paper's forward-Euler runs): synaptic current first, then the membrane with the *new* current,
then the threshold test with a strict ``>``, then the reset. Every function takes the input of
one step ``x`` (``[B, *shape]``), the state (a ``NamedTuple``) and the node's parameters, and
returns ``(output, new_state)``; none mutates anything.

Per node type, with :math:`x_t` the summed input at step t:

- **LIF** (:math:`\tau \dot v = (v_\text{leak} - v) + R\,I`):
  :math:`v \leftarrow v + \frac{dt}{\tau}(v_\text{leak} - v + R x_t)`; spike
  :math:`z = [v > v_\text{th}]`; reset :math:`v \leftarrow v_\text{reset}` where z ("zero"
  reset, the default) or :math:`v \leftarrow v - v_\text{th} z` ("subtract").
- **CubaLIF**: :math:`I \leftarrow I + \frac{dt}{\tau_\text{syn}}(w_\text{in} x_t - I)`, then the
  LIF update driven by the new :math:`I`, threshold and reset as for LIF. The synaptic current
  is not reset.
- **LI** / **CubaLI**: as LIF / CubaLIF without threshold; the output is :math:`v`.
- **IF** (:math:`\dot v = R I`) and **I** (integrator): :math:`v \leftarrow v + R x_t`. dt does
  *not* scale them: NIR producers (sinabs, Norse, snnTorch) and consumers treat IF as a
  per-step integrator whose threshold is in per-step input units, and stac follows them.
- **Threshold**: :math:`z = [x_t > \theta]`, stateless.
- **Affine / Linear / Scale / Conv2d / SumPool2d / AvgPool2d / Flatten**: stateless maps of
  the current step's input (SumPool2d = average pool times the kernel area).
- **Recurrent bias**: a recurrent weight (an Affine fed only by last step's neuron output,
  marked by :func:`stac.ir.nir_io.read_nir` with ``metadata["recurrent_bias"]``) sees zeros at
  step 0. Under "snntorch" (the default, as snnTorch's RLeaky/RSynaptic) it still adds its
  bias at step 0; under "norse" (as Norse's ``from_nir`` through nirtorch, which skips an
  input not yet computed) its output at step 0 is zero, bias included, and it is the plain
  affine map from step 1. The one bit of state is "has it run yet".

The values are computed in the dtype of the input (float32 by default).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import nir
import numpy as np
import torch
import torch.nn.functional as F

from stac.errors import StacError


class LIFState(NamedTuple):
    v: torch.Tensor


class CubaLIFState(NamedTuple):
    i: torch.Tensor
    v: torch.Tensor


class IFState(NamedTuple):
    v: torch.Tensor


def _t(value: Any, like: torch.Tensor) -> torch.Tensor:
    """A parameter as a tensor of ``like``'s dtype, broadcastable over the batch axis."""
    return torch.as_tensor(np.asarray(value), dtype=like.dtype)


def _fire(v: torch.Tensor, v_th: torch.Tensor, v_reset: torch.Tensor, reset: str):
    z = (v > v_th).to(v.dtype)
    if reset == "subtract":
        v = v - z * v_th
    else:
        v = torch.where(z > 0, v_reset.expand_as(v), v)
    return z, v


def lif_step(node: nir.LIF, x: torch.Tensor, state: LIFState, dt: float, reset: str = "zero"):
    tau = _t(node.tau, x)
    v = state.v + (dt / tau) * (_t(node.v_leak, x) - state.v + _t(node.r, x) * x)
    z, v = _fire(v, _t(node.v_threshold, x), _t(node.v_reset, x), reset)
    return z, LIFState(v)


def li_step(node: nir.LI, x: torch.Tensor, state: LIFState, dt: float):
    tau = _t(node.tau, x)
    v = state.v + (dt / tau) * (_t(node.v_leak, x) - state.v + _t(node.r, x) * x)
    return v, LIFState(v)


def _cuba(node: Any, x: torch.Tensor, state: CubaLIFState, dt: float):
    i = state.i + (dt / _t(node.tau_syn, x)) * (_t(node.w_in, x) * x - state.i)
    v = state.v + (dt / _t(node.tau_mem, x)) * (_t(node.v_leak, x) - state.v + _t(node.r, x) * i)
    return i, v


def cuba_lif_step(
    node: nir.CubaLIF, x: torch.Tensor, state: CubaLIFState, dt: float, reset: str = "zero"
):
    i, v = _cuba(node, x, state, dt)
    z, v = _fire(v, _t(node.v_threshold, x), _t(node.v_reset, x), reset)
    return z, CubaLIFState(i, v)


def cuba_li_step(node: nir.CubaLI, x: torch.Tensor, state: CubaLIFState, dt: float):
    i, v = _cuba(node, x, state, dt)
    return v, CubaLIFState(i, v)


def if_step(
    node: nir.IF,
    x: torch.Tensor,
    state: IFState,
    dt: float,  # noqa: ARG001 - the step table's signature; IF integrates per step
    reset: str = "zero",
):
    v = state.v + _t(node.r, x) * x
    z, v = _fire(v, _t(node.v_threshold, x), _t(node.v_reset, x), reset)
    return z, IFState(v)


def integrator_step(
    node: nir.I,
    x: torch.Tensor,
    state: IFState,
    dt: float,  # noqa: ARG001 - the step table's signature; I integrates per step
):
    v = state.v + _t(node.r, x) * x
    return v, IFState(v)


def threshold_map(node: nir.Threshold, x: torch.Tensor) -> torch.Tensor:
    return (x > _t(node.threshold, x)).to(x.dtype)


def _pair(value: Any) -> tuple[int, int]:
    arr = np.broadcast_to(np.asarray(value).reshape(-1), (2,))
    return int(arr[0]), int(arr[1])


def affine_map(
    node: nir.Affine | nir.Linear,
    x: torch.Tensor,
    param: Callable[[Any], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``x W^T + b`` (Linear: no b), the one affine semantics of stac's executors; ``param``
    turns a stored array into a tensor (default: in ``x``'s dtype, uncached)."""
    get = param or (lambda value: _t(value, x))
    return F.linear(x, get(node.weight), get(node.bias) if isinstance(node, nir.Affine) else None)


def affine_step(
    node: nir.Affine | nir.Linear, x: torch.Tensor, state: Any, _dt: float
) -> tuple[torch.Tensor, Any]:
    """One step of an Affine/Linear; ``state`` is None before its first step. A recurrent
    weight under the "norse" convention outputs zeros at its first step (see the module
    docstring)."""
    if state is None and (node.metadata or {}).get("recurrent_bias") == "norse":
        return torch.zeros_like(affine_map(node, x)), True
    return affine_map(node, x), True


def conv2d_geometry(node: nir.Conv2d) -> dict[str, Any]:
    """``stride``, ``padding``, ``dilation`` and ``groups`` of a Conv2d as F.conv2d takes them."""
    pad = node.padding
    return {
        "stride": _pair(node.stride),
        "padding": pad if isinstance(pad, str) else _pair(pad),
        "dilation": _pair(node.dilation),
        "groups": int(node.groups),
    }


def conv2d_map(node: nir.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, _t(node.weight, x), _t(node.bias, x), **conv2d_geometry(node))


def pool_map(node: nir.SumPool2d | nir.AvgPool2d, x: torch.Tensor) -> torch.Tensor:
    k = _pair(node.kernel_size)
    y = F.avg_pool2d(x, k, _pair(node.stride), _pair(node.padding), count_include_pad=True)
    return y * (k[0] * k[1]) if isinstance(node, nir.SumPool2d) else y


def flatten_map(node: nir.Flatten, x: torch.Tensor) -> torch.Tensor:
    """NIR's Flatten of the sample axes ``start_dim..end_dim`` (batch axis excluded)."""
    start, end = int(node.start_dim), int(node.end_dim)
    if start == 0 and end == -1:
        return x.reshape(x.shape[0], -1)
    return torch.flatten(x, start + 1, end + (1 if end >= 0 else 0))


def _reset(node: Any) -> str:
    return (node.metadata or {}).get("reset", "zero")


def _stateless(fn: Callable[[Any, torch.Tensor], torch.Tensor]) -> StepFn:
    return lambda node, x, _state, _dt: (fn(node, x), None)


StepFn = Callable[[Any, torch.Tensor, Any, float], tuple[torch.Tensor, Any]]

#: One step of every supported NIR node type: ``(node, x, state, dt) -> (output, new state)``.
STEPS: dict[type, StepFn] = {
    nir.CubaLIF: lambda n, x, st, dt: cuba_lif_step(n, x, st, dt, _reset(n)),
    nir.LIF: lambda n, x, st, dt: lif_step(n, x, st, dt, _reset(n)),
    nir.IF: lambda n, x, st, dt: if_step(n, x, st, dt, _reset(n)),
    nir.CubaLI: cuba_li_step,
    nir.LI: li_step,
    nir.I: integrator_step,
    nir.Threshold: _stateless(threshold_map),
    nir.Affine: affine_step,
    nir.Linear: affine_step,
    nir.Scale: _stateless(lambda n, x: x * _t(n.scale, x)),
    nir.Conv2d: _stateless(conv2d_map),
    nir.SumPool2d: _stateless(pool_map),
    nir.AvgPool2d: _stateless(pool_map),
    nir.Flatten: _stateless(flatten_map),
    nir.Input: _stateless(lambda _node, x: x),
    nir.Output: _stateless(lambda _node, x: x),
}

#: The zero state of each stateful node type for a batch of a given shape.
INITIAL_STATES: dict[type, Callable[[torch.Tensor], Any]] = {
    nir.CubaLIF: lambda z: CubaLIFState(z, z.clone()),
    nir.CubaLI: lambda z: CubaLIFState(z, z.clone()),
    nir.LIF: LIFState,
    nir.LI: LIFState,
    nir.IF: IFState,
    nir.I: IFState,
}


def initial_state(node: Any, shape: tuple[int, ...], dtype: torch.dtype) -> Any:
    """The zero state of a stateful node for a batch of shape ``shape``; None if stateless."""
    make = INITIAL_STATES.get(type(node))
    return make(torch.zeros(shape, dtype=dtype)) if make is not None else None


def step(node: Any, x: torch.Tensor, state: Any, dt: float) -> tuple[torch.Tensor, Any]:
    """One step of any supported NIR node (:data:`STEPS`): ``x`` is ``[B, *input_shape]``."""
    fn = STEPS.get(type(node))
    if fn is None:
        raise StacError(
            f"no NIR step semantics for {type(node).__name__}; supported types: "
            f"{', '.join(sorted(t.__name__ for t in STEPS))}"
        )
    return fn(node, x, state, dt)


__all__ = [
    "CubaLIFState",
    "IFState",
    "INITIAL_STATES",
    "LIFState",
    "STEPS",
    "affine_map",
    "affine_step",
    "conv2d_geometry",
    "conv2d_map",
    "flatten_map",
    "cuba_li_step",
    "cuba_lif_step",
    "if_step",
    "initial_state",
    "integrator_step",
    "li_step",
    "lif_step",
    "pool_map",
    "step",
    "threshold_map",
]
