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


__all__ = ["DEFAULT_SLOPE", "SuperSpike", "spike_fn", "superspike"]
