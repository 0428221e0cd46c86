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

The values are computed in the dtype of the input (float32 by default).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import nir
import numpy as np
import torch
import torch.nn.functional as F


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


def cuba_lif_step(node: nir.CubaLIF, x: torch.Tensor, state: CubaLIFState, dt: float,
                  reset: str = "zero"):
    i, v = _cuba(node, x, state, dt)
    z, v = _fire(v, _t(node.v_threshold, x), _t(node.v_reset, x), reset)
    return z, CubaLIFState(i, v)


def cuba_li_step(node: nir.CubaLI, x: torch.Tensor, state: CubaLIFState, dt: float):
    i, v = _cuba(node, x, state, dt)
    return v, CubaLIFState(i, v)


def if_step(node: nir.IF, x: torch.Tensor, state: IFState, dt: float, reset: str = "zero"):
    v = state.v + _t(node.r, x) * x
    z, v = _fire(v, _t(node.v_threshold, x), _t(node.v_reset, x), reset)
    return z, IFState(v)


def integrator_step(node: nir.I, x: torch.Tensor, state: IFState, dt: float):
    v = state.v + _t(node.r, x) * x
    return v, IFState(v)


def threshold_map(node: nir.Threshold, x: torch.Tensor) -> torch.Tensor:
    return (x > _t(node.threshold, x)).to(x.dtype)


def _pair(value: Any) -> tuple[int, int]:
    arr = np.broadcast_to(np.asarray(value).reshape(-1), (2,))
    return int(arr[0]), int(arr[1])


def affine_map(node: nir.Affine | nir.Linear, x: torch.Tensor,
               param: Callable[[Any], torch.Tensor] | None = None) -> torch.Tensor:
    """``x W^T + b`` (Linear: no b), the one affine semantics of stac's executors; ``param``
    turns a stored array into a tensor (default: in ``x``'s dtype, uncached)."""
    get = param or (lambda value: _t(value, x))
    return F.linear(x, get(node.weight), get(node.bias) if isinstance(node, nir.Affine) else None)


def conv2d_geometry(node: nir.Conv2d) -> dict[str, Any]:
    """``stride``, ``padding``, ``dilation`` and ``groups`` of a Conv2d as F.conv2d takes them."""
    pad = node.padding
    return {"stride": _pair(node.stride), "padding": pad if isinstance(pad, str) else _pair(pad),
            "dilation": _pair(node.dilation), "groups": int(node.groups)}


def conv2d_map(node: nir.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, _t(node.weight, x), _t(node.bias, x), **conv2d_geometry(node))


def pool_map(node: nir.SumPool2d | nir.AvgPool2d, x: torch.Tensor) -> torch.Tensor:
    k = _pair(node.kernel_size)
    y = F.avg_pool2d(x, k, _pair(node.stride), _pair(node.padding), count_include_pad=True)
    return y * (k[0] * k[1]) if isinstance(node, nir.SumPool2d) else y


def initial_state(node: Any, shape: tuple[int, ...], dtype: torch.dtype) -> Any:
    """The zero state of a stateful node for a batch of shape ``shape``; None if stateless."""
    zeros = torch.zeros(shape, dtype=dtype)
    if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
        return CubaLIFState(zeros, zeros.clone())
    if isinstance(node, (nir.LIF, nir.LI)):
        return LIFState(zeros)
    if isinstance(node, (nir.IF, nir.I)):
        return IFState(zeros)
    return None


def step(node: Any, x: torch.Tensor, state: Any, dt: float) -> tuple[torch.Tensor, Any]:
    """One step of any supported NIR node: ``x`` is ``[B, *input_shape]``."""
    reset = (node.metadata or {}).get("reset", "zero")
    if isinstance(node, nir.CubaLIF):
        return cuba_lif_step(node, x, state, dt, reset)
    if isinstance(node, nir.LIF):
        return lif_step(node, x, state, dt, reset)
    if isinstance(node, nir.IF):
        return if_step(node, x, state, dt, reset)
    if isinstance(node, nir.CubaLI):
        return cuba_li_step(node, x, state, dt)
    if isinstance(node, nir.LI):
        return li_step(node, x, state, dt)
    if isinstance(node, nir.I):
        return integrator_step(node, x, state, dt)
    if isinstance(node, nir.Threshold):
        return threshold_map(node, x), None
    if isinstance(node, (nir.Affine, nir.Linear)):
        return affine_map(node, x), None
    if isinstance(node, nir.Scale):
        return x * _t(node.scale, x), None
    if isinstance(node, nir.Conv2d):
        return conv2d_map(node, x), None
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        return pool_map(node, x), None
    if isinstance(node, nir.Flatten):
        return x.reshape(x.shape[0], -1) if int(node.start_dim) == 0 and int(node.end_dim) == -1 \
            else torch.flatten(x, int(node.start_dim) + 1,
                               int(node.end_dim) + (1 if int(node.end_dim) >= 0 else 0)), None
    if isinstance(node, (nir.Input, nir.Output)):
        return x, None
    raise TypeError(f"no NIR step semantics for {type(node).__name__}")


__all__ = [
    "CubaLIFState", "IFState", "LIFState", "affine_map", "conv2d_geometry", "conv2d_map",
    "cuba_li_step", "cuba_lif_step", "if_step", "initial_state", "integrator_step", "li_step",
    "lif_step", "pool_map", "step", "threshold_map",
]
