"""Initial dead zones for a converted graph's encoders, from the drive they see.

A SignedIF's dead zone d silences a neuron at a step whose potential lies in ``[-d, d)``
(:class:`stac.ir.nodes.SignedIF`). For an onset-driven encoder the first step's potential is
the token's whole drive ``T x``, so a dead zone at the quantile Q of ``|T x|`` over a layer's
neurons and tokens silences about a fraction Q of that layer's spikes (those carrying its
smallest values), before the grid snap ``(D - 1/2) theta`` of
:meth:`stac.train.graphnet.GraphNet.dead_zone`.

Per layer rather than per neuron: a layer's values feed one weight matrix, so dropping its
smallest magnitudes first is the cheapest cut in absolute error (magnitude pruning of
activations); a per-neuron quantile would silence a fixed share of every channel, large or
small. Training (``stac finetune --dead-zone-lr``) then moves each neuron's zone on its own.
"""

from __future__ import annotations

import logging
import math

import torch

from stac.errors import StacError
from stac.train.graphnet import GraphNet, _key

log = logging.getLogger(__name__)


@torch.no_grad()
def init_dead_zones(
    net: GraphNet, batches: list[torch.Tensor], steps: int, quantile: float
) -> dict[str, float]:
    """Set every encoder's initial dead zone to the ``quantile`` of ``|T x|`` over its neurons
    and the tokens of ``batches`` (the spiking forward without dead zones: each encoder sees
    the drive the graph gives it today), at least the no-op ``theta / 2``; the learnt
    log-factor is reset to 0. Returns the quantile per encoder (value units)."""
    if not 0.0 <= quantile < 1.0:
        raise StacError(f"--dead-zone-init must be a quantile in [0, 1), got {quantile}")
    missing = [n for n in net.encoders if _key(n, "log_dead_zone") not in net.params]
    if missing:
        raise StacError(f"{missing[0]}: the network was built without dead zones")
    saved = {n: getattr(net, _key(n, "dead_zone0")).clone() for n in net.encoders}
    for name in net.encoders:  # no dead zone while measuring: the no-op theta / 2
        theta = net.threshold(name, steps)
        getattr(net, _key(name, "dead_zone0")).copy_(theta / 2)
        net.params[_key(name, "log_dead_zone")].zero_()
    net.capture = {}
    try:
        for ids in batches:
            net(ids, steps)
        captured = net.capture
    finally:
        net.capture = None
    found: dict[str, float] = {}
    for name in net.encoders:
        if name not in captured:  # not reached by the forward (no spiking path): unchanged
            getattr(net, _key(name, "dead_zone0")).copy_(saved[name])
            continue
        drive = torch.cat(captured[name]).flatten()
        k = min(max(math.ceil(quantile * drive.numel()), 1), drive.numel())
        value = float(drive.kthvalue(k).values) if quantile > 0 else 0.0
        theta = net.threshold(name, steps).detach()
        getattr(net, _key(name, "dead_zone0")).copy_(torch.clamp_min(theta / 2, value))
        found[name] = value
    log.info("dead zones at the %.3g quantile of |T x| for %d encoders", quantile, len(found))
    return found


__all__ = ["init_dead_zones"]
