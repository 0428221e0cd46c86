r"""Surrogate gradients: a Heaviside spike forward, a smooth derivative backward.

:func:`superspike` is the SuperSpike surrogate (Zenke & Ganguli 2018): the forward pass is the
spike rule :math:`s = [x > 0]` exactly, and the backward pass replaces its derivative (a Dirac
delta) by the derivative of a fast sigmoid,

.. math::
    \frac{\partial s}{\partial x} \approx \frac{1}{(1 + \beta\,|x|)^2},

which is 1 at the threshold (x = 0) and falls to 1/4 at :math:`|x| = 1/\beta`. ``slope``
:math:`\beta` is in inverse units of x (a voltage for a membrane): a larger slope is a sharper,
more local gradient. Its integral over x is :math:`2/\beta`, not 1: the scale of the gradient
follows the slope, as in SuperSpike and Norse's ``superspike`` (``alpha`` there).
"""

from __future__ import annotations

from typing import Any

import torch

from stac.sim.adex import SpikeFn

#: Default slope beta, per unit of x. Picked for membranes whose threshold-to-rest distance is
#: of order 1 (stac.train.adex's default units), so the gradient is wide enough to reach
#: neurons a fraction of that distance below threshold.
DEFAULT_SLOPE = 5.0


class SuperSpike(torch.autograd.Function):
    """Heaviside forward, fast-sigmoid derivative backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, slope: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.slope = slope
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad / (1.0 + ctx.slope * x.abs()) ** 2, None


def superspike(x: torch.Tensor, slope: float = DEFAULT_SLOPE) -> torch.Tensor:
    """Spikes ``[x > 0]`` whose gradient is the SuperSpike surrogate of ``slope``."""
    if not slope > 0:
        raise ValueError(f"superspike slope must be > 0, got {slope}")
    out: torch.Tensor = SuperSpike.apply(x, slope)
    return out


def spike_fn(slope: float = DEFAULT_SLOPE) -> SpikeFn:
    """A ``spike_fn`` for :func:`stac.sim.adex.adex_step` with the SuperSpike surrogate."""
    if not slope > 0:
        raise ValueError(f"superspike slope must be > 0, got {slope}")

    def fn(x: torch.Tensor) -> torch.Tensor:
        return superspike(x, slope)

    return fn


# --- staircases: the multi-level spiking quantiser -------------------------------------------


def _edge_weight(d: torch.Tensor, slope: float) -> torch.Tensor:
    """SuperSpike's derivative at distance ``d`` from an edge, divided by its mean over one unit
    interval (``|d| <= 1/2``), so a staircase of unit steps gets the identity's average slope."""
    mean = (2.0 / slope) * (1.0 - 1.0 / (1.0 + slope / 2.0))  # integral over [-1/2, 1/2]
    return 1.0 / (1.0 + slope * d.abs()) ** 2 / mean


class _EdgeGrad(torch.autograd.Function):
    """Zero forward; backward the surrogate of a staircase whose edges sit at ``|u| = 1/2 + j p``
    (j = 0, 1, ...; none past ``cap``), odd (levels, sign following u) or even (a count)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, u: torch.Tensor, period: int, cap: float, slope: float, odd: bool
    ) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.period, ctx.cap, ctx.slope, ctx.odd = period, cap, slope, odd
        return torch.zeros_like(u)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        (u,) = ctx.saved_tensors
        a = u.abs() - 0.5
        p = float(ctx.period)
        d = a - torch.round(a / p).clamp_min(0) * p  # distance to the nearest edge
        g = _edge_weight(d, ctx.slope) * (a < ctx.cap)
        if not ctx.odd:
            g = g * torch.sign(u)
        return grad * g, None, None, None, None


def staircase_grad(
    u: torch.Tensor, cap: float, slope: float = 2.0, period: int = 1, odd: bool = True
) -> torch.Tensor:
    """A tensor of zeros whose gradient with respect to ``u`` is a staircase's surrogate.

    Add it to an exact (detached) staircase value to give that value a gradient: the forward
    stays the spiking rule to the bit, the backward sees each edge at ``|u| = 1/2 + j period``
    (j < ``cap / period``) through the SuperSpike derivative of ``slope`` at the nearest edge,
    scaled so that a unit staircase has mean slope 1 (the straight-through estimator's
    scale). ``odd``: the levels of the rounding quantiser ``clamp(floor(u + 1/2), -cap, cap)``;
    otherwise a count of edges crossed by ``|u|`` (a spike count), whose slope takes u's sign.
    Zero past the last edge (the clamp).
    """
    if not slope > 0:
        raise ValueError(f"staircase slope must be > 0, got {slope}")
    out: torch.Tensor = _EdgeGrad.apply(u, int(period), float(cap), float(slope), bool(odd))
    return out


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]  # noqa: ARG004
        return torch.round(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return grad


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` forward, identity backward (the straight-through estimator)."""
    out: torch.Tensor = _RoundSTE.apply(x)
    return out


__all__ = ["DEFAULT_SLOPE", "SuperSpike", "round_ste", "spike_fn", "staircase_grad", "superspike"]
