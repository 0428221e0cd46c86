r"""Float semantics of :class:`stac.ir.nodes.adex.AdEx`: a pure step function over explicit state.

Forward Euler at a fixed step ``dt`` (in the unit of the node's time constants), both state
variables updated from the *old* state (as Brian2's ``euler`` method does), then the spike
test on the new potential, then the reset:

.. math::
    v' &= v + \frac{dt}{\tau_m}\Big((v_\text{rest} - v) + \Delta_T e^{\min(u,\,u_\max)}
          + R\,(x - w)\Big), \quad u = \frac{v - v_\text{th}}{\Delta_T} \\
    w' &= w + \frac{dt}{\tau_w}\big(a\,(v - v_\text{rest}) - w\big) \\
    s &= [v' > v_\text{cut}], \qquad v \leftarrow s\,v_\text{reset} + (1 - s)\,v', \qquad
    w \leftarrow w' + b\,s

with :math:`v_\text{cut} = v_\text{peak}` where :math:`\Delta_T > 0` and
:math:`v_\text{cut} = v_\text{th}` where :math:`\Delta_T = 0` (the exponential term is then 0:
a hard threshold, and with :math:`a = b = 0` the step is NIR's LIF step exactly, in the same
operation order as :func:`stac.sim.nir_neurons.lif_step`).

**Overflow.** Near a spike the exponential runs away (the real trajectory reaches infinity in
finite time), and ``exp`` of float32 overflows above an argument of about 88. The argument is
therefore capped at :data:`EXP_ARG_MAX` = 40: the term stays below
:math:`\Delta_T e^{40} \approx 2.4\cdot 10^{17}\,\Delta_T`, so one Euler step moves v by a
finite amount, the spike test sees it above the cut-off and the reset replaces it in the same
step: v never leaves the finite range and never reaches the next step un-reset. The cap only
changes the dynamics where :math:`v > v_\text{th} + 40\Delta_T`, a region the true solution
crosses in far less than any usable dt (at Naud et al.'s parameters the cut-off
:math:`v_\text{peak} = v_\text{th} + 25\Delta_T` lies below it, so nothing changes at all).

The reset is written arithmetically (not with ``where``) so that a surrogate ``spike_fn``
(see :mod:`stac.train.surrogate`) passes gradients through it; with the default Heaviside the
values are the same. All tensors broadcast: parameters of shape ``(n,)``, input and state of
shape ``[..., n]``; the values are computed in torch's promoted dtype of the two (build the
parameters with :func:`adex_params` in the input's dtype).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from stac.ir.nodes.adex import ADEX_FIELDS, AdEx

#: Cap on the exponent (v - v_th) / delta_t (see the module docstring).
EXP_ARG_MAX = 40.0

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


class AdExState(NamedTuple):
    v: torch.Tensor  # membrane potential, [..., n]
    w: torch.Tensor  # adaptation current, [..., n]


class AdExParams(NamedTuple):
    """The node's fields as tensors of shape (n,), same names and meaning."""

    tau_m: torch.Tensor
    tau_w: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    delta_t: torch.Tensor
    v_th: torch.Tensor
    v_reset: torch.Tensor
    v_rest: torch.Tensor
    r: torch.Tensor
    v_peak: torch.Tensor


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """1 where ``x > 0``, else 0 (the forward spike rule, no gradient)."""
    return (x > 0).to(x.dtype)


def adex_params(node: AdEx, dtype: torch.dtype = torch.float32) -> AdExParams:
    """The node's parameters as tensors."""
    return AdExParams(
        *(torch.as_tensor(np.asarray(getattr(node, f)), dtype=dtype) for f in ADEX_FIELDS)
    )


def adex_init(params: AdExParams, batch: tuple[int, ...] = ()) -> AdExState:
    """The rest state v = v_rest, w = 0, of shape ``[*batch, n]``."""
    v = params.v_rest.expand(*batch, params.v_rest.shape[-1]).clone()
    return AdExState(v, torch.zeros_like(v))


def adex_step(
    x: torch.Tensor, state: AdExState, params: AdExParams, dt: float, spike_fn: SpikeFn = heaviside
) -> tuple[torch.Tensor, AdExState]:
    """One forward-Euler step of ``dt``; returns (spikes in {0, 1}, new state).

    ``spike_fn`` maps :math:`v' - v_\\text{cut}` to spikes; it must return 1 where its
    argument is > 0 and 0 elsewhere (a surrogate may change only the gradient).
    """
    p = params
    soft = p.delta_t > 0
    scale = torch.where(soft, p.delta_t, torch.ones_like(p.delta_t))  # no 0/0 where hard
    arg = ((state.v - p.v_th) / scale).clamp(max=EXP_ARG_MAX)
    exp_term = torch.where(soft, p.delta_t * torch.exp(arg), torch.zeros_like(arg))
    v = state.v + (dt / p.tau_m) * ((p.v_rest - state.v) + exp_term + p.r * (x - state.w))
    w = state.w + (dt / p.tau_w) * (p.a * (state.v - p.v_rest) - state.w)
    s = spike_fn(v - torch.where(soft, p.v_peak, p.v_th))
    return s, AdExState(s * p.v_reset + (1 - s) * v, w + p.b * s)


def adex_scan(
    drive: torch.Tensor,
    params: AdExParams,
    dt: float,
    state: AdExState | None = None,
    spike_fn: SpikeFn = heaviside,
) -> tuple[torch.Tensor, AdExState]:
    """Run one step per leading index of ``drive`` (``[T, ..., n]``) from ``state`` (default:
    rest); returns the spikes ``[T, ..., n]`` and the final state."""
    if state is None:
        state = adex_init(params, tuple(drive.shape[1:-1]))
        state = AdExState(state.v.to(drive.dtype), state.w.to(drive.dtype))
    spikes = []
    for x in drive:
        s, state = adex_step(x, state, params, dt, spike_fn)
        spikes.append(s)
    return torch.stack(spikes), state


__all__ = [
    "EXP_ARG_MAX",
    "AdExParams",
    "AdExState",
    "adex_init",
    "adex_params",
    "adex_scan",
    "adex_step",
    "heaviside",
]
