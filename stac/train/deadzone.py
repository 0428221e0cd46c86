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
small. With ``score="output"`` the magnitude is weighed by what the value moves downstream,
``|T x_j| ||W_{:,j}||`` (the norm of the weight column it multiplies, over every map the
encoder feeds; the weight-aware score of activation-sparsity methods such as TEAL and WINA):
the zone is then per neuron, ``d_j = tau / ||W_{:,j}||`` with tau the layer's quantile of the
score. Training (``stac finetune --dead-zone-lr``) then moves each neuron's zone on its own.
"""

from __future__ import annotations

import logging
import math

import torch

from stac.errors import StacError
from stac.ir.graph import successors
from stac.train.graphnet import WEIGHTED, GraphNet, _key

SCORES = ("drive", "output")

log = logging.getLogger(__name__)


@torch.no_grad()
def column_norms(net: GraphNet, name: str) -> torch.Tensor:
    """``||W_{:,j}||`` per neuron j of encoder ``name``, over every weighted map it feeds."""
    total = None
    for succ in successors(net.graph)[name]:
        if isinstance(net.graph.nodes[succ], WEIGHTED):
            sq = net.weight(succ).detach().pow(2).sum(0)
            total = sq if total is None else total + sq
    if total is None:
        raise StacError(f"{name}: feeds no weighted map, so it has no output score")
    return total.sqrt()


@torch.no_grad()
def init_dead_zones(
    net: GraphNet,
    batches: list[torch.Tensor],
    steps: int,
    quantile: float,
    score: str = "drive",
    per_encoder: dict[str, float] | None = None,
) -> dict[str, float]:
    """Set every encoder's initial dead zone to the ``quantile`` of ``|T x|`` (``score=
    "drive"``) or of ``|T x| ||W_{:,j}||`` (``"output"``, the zone then ``tau / ||W_{:,j}||``)
    over its neurons and the tokens of ``batches`` (the spiking forward without dead zones:
    each encoder sees the drive the graph gives it today), at least the no-op ``theta / 2``;
    the learnt log-factor is reset to 0. ``per_encoder``: a quantile for the encoders whose
    name contains the key (the first key that matches), in place of ``quantile``. Returns the
    quantile's value per encoder."""
    per_encoder = dict(per_encoder or {})
    for key, q in per_encoder.items():
        if not 0.0 <= q < 1.0:
            raise StacError(f"--dead-zone-init-for {key}={q}: not a quantile in [0, 1)")
    if not 0.0 <= quantile < 1.0:
        raise StacError(f"--dead-zone-init must be a quantile in [0, 1), got {quantile}")
    if score not in SCORES:
        raise StacError(f"--dead-zone-score must be one of {SCORES}, got {score!r}")
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
        drive = torch.cat(captured[name])
        norms = column_norms(net, name).clamp_min(1e-30) if score == "output" else None
        scored = (drive if norms is None else drive * norms).flatten()
        q = next((v for key, v in per_encoder.items() if key in name), quantile)
        k = min(max(math.ceil(q * scored.numel()), 1), scored.numel())
        value = float(scored.kthvalue(k).values) if q > 0 else 0.0
        theta = net.threshold(name, steps).detach()
        zone = torch.full_like(theta, value) if norms is None else value / norms
        getattr(net, _key(name, "dead_zone0")).copy_(torch.maximum(theta / 2, zone))
        found[name] = value
    log.info("dead zones at the %.3g quantile of |T x| for %d encoders", quantile, len(found))
    return found


__all__ = ["SCORES", "column_norms", "init_dead_zones"]
