r"""stac's signed IF encoder (:class:`stac.ir.nodes.SignedIF`), once per number format.

Float (the reference simulator's), per timestep, with payload cap K (``max_payload``)::

    v <- v + x;   s = clamp(floor(v / theta + 1/2), -K, K);   v <- v - s theta

Integer (the chip's; integer drive ``x``, integer threshold ``theta``, ``v_max`` the largest
potential the state holds)::

    v <- clip(v + x, -v_max, v_max);   s = clamp(floor((2v + theta) / (2 theta)), -K, K);
    v <- v - s theta

With integer inputs and an unsaturated potential the two rules are the same number
(``floor(v / theta + 1/2) = floor((2v + theta) / (2 theta))``), so they agree spike for spike.
The integer rule (:func:`signed_if_int_update`) is written with operators numpy arrays and
torch tensors share, so stac's Lava process model calls it as it is.

Closed form: driven from ``v = 0`` by ``T x`` at the first step and nothing after (onset
drive), the neuron emits payloads that sum to ``n = clamp(floor(T x / theta + 1/2), -T K,
T K)``: the first step emits ``clamp(n_0, -K, K)`` with ``n_0`` the unclamped level, every
later step drains at most K more, and the potential ends within half a threshold of zero. Its
mean output ``n theta / T`` is a (2TK + 1)-level rounding quantiser
(:func:`onset_quantiser`). A held drive x for T steps emits ``round(T x / theta)`` in total
up to ties (the potential stays within half a threshold), the same grid.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from stac.errors import StacError
from stac.sim.fixed_point import LoihiFormat, as_int, scan

Tensor = torch.Tensor


# --- float -------------------------------------------------------------------------------------


class SignedIFState(NamedTuple):
    v: torch.Tensor  # membrane potential, same shape as the input


def token_gain(x: Tensor, threshold: Tensor, ratio: float, floor: float) -> Tensor:
    """A SignedIF's per-token gain ``[..., 1]`` for token drives ``x`` ``[..., n]``:
    ``max(floor, ratio * max_c |x_c| / theta_c)``, and 1 for an all-zero token when the floor
    is 0 (:class:`stac.ir.nodes.SignedIF`, ``token_gain``)."""
    g = (ratio * (x.abs() / threshold).amax(-1, keepdim=True)).clamp_min(floor)
    return torch.where(g > 0, g, torch.ones_like(g))


def rounded_level(v: Tensor, threshold: Tensor) -> Tensor:
    """``floor(v / theta + 1/2)``: the potential in thresholds, rounded half up (float rule)."""
    return torch.floor(v / threshold + 0.5)


def dead_zone_mask(v: Tensor, dead_zone: Tensor) -> Tensor:
    """True where a potential lies in the dead zone ``[-d, d)`` (no spike, potential kept)."""
    return (v >= -dead_zone) & (v < dead_zone)


def signed_if_step(
    x: torch.Tensor,
    state: SignedIFState,
    threshold: torch.Tensor,
    max_payload: int = 1,
    dead_zone: torch.Tensor | None = None,
) -> tuple[torch.Tensor, SignedIFState]:
    """One timestep of :class:`stac.ir.nodes.SignedIF`; returns (payloads in [-K, K], state).

    The payload is the membrane potential in units of the threshold, rounded half up and
    clipped to ``max_payload``; K = 1 fires +1 at ``v >= theta/2`` and -1 below ``-theta/2``.
    With ``dead_zone`` d, a potential in ``[-d, d)`` emits nothing (and is kept).
    """
    v = state.v + x
    s = rounded_level(v, threshold).clamp_(-max_payload, max_payload)
    if dead_zone is not None:
        s = s.masked_fill(dead_zone_mask(v, dead_zone), 0.0)
    return s, SignedIFState(v - s * threshold)


def signed_if_scan(
    drive: torch.Tensor,
    threshold: torch.Tensor,
    steps: int,
    per_step: bool,
    max_payload: int = 1,
    onset: bool = False,
    dead_zone: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run ``steps`` timesteps from v = 0 and return the payloads, shape ``[steps, ...]``.

    ``drive`` is one current held for all steps (``per_step=False``, shape ``[..., n]``), a
    current per step (``per_step=True``, shape ``[steps, ..., n]``), or with ``onset`` one
    current ``steps * drive`` delivered at the first step and nothing after (the drive's mean
    over the steps is the same in all three cases). ``dead_zone``: see :func:`signed_if_step`.
    """
    if onset and per_step:
        raise ValueError("onset drive takes one value per token, not one per step")
    first = drive[0] if per_step else drive
    state = SignedIFState(torch.zeros_like(first))
    quiet = torch.zeros_like(first)
    spikes = []
    for t in range(steps):
        if per_step:
            x = drive[t]
        elif onset:
            x = drive * steps if t == 0 else quiet
        else:
            x = drive
        s, state = signed_if_step(x, state, threshold, max_payload, dead_zone)
        spikes.append(s)
    return torch.stack(spikes)


def onset_level(x: Tensor, threshold: Tensor, steps: int) -> Tensor:
    """``floor(T x / theta + 1/2)`` with the float operations of the scan's first step: the
    total payload an onset-driven neuron emits before the cap ``T K`` (see the module
    docstring)."""
    return rounded_level(x * steps, threshold)


def onset_quantiser(
    x: Tensor,
    threshold: Tensor,
    steps: int,
    max_payload: int,
    dead_zone: Tensor | None = None,
) -> Tensor:
    """The closed form of :func:`signed_if_scan` with ``onset``: its T-step mean output
    ``clamp(floor(T x / theta + 1/2), -T K, T K) * theta / T``; with a dead zone, the level
    of :func:`onset_dead_zone_level` instead."""
    if dead_zone is not None:
        return onset_dead_zone_level(x, threshold, steps, max_payload, dead_zone) * (
            threshold / steps
        )
    cap = steps * max_payload
    return onset_level(x, threshold, steps).clamp(-cap, cap) * threshold / steps


def onset_dead_zone_level(
    x: Tensor, threshold: Tensor, steps: int, max_payload: int, dead_zone: Tensor
) -> Tensor:
    r"""Closed form of the total payload of an onset-driven SignedIF with dead zone d.

    With ``a = T x`` at the first step and ``n0 = floor(a / theta + 1/2)``: nothing if
    ``-d <= a < d``. Otherwise step t (t = 0, 1, ...) finds the potential ``a - t K theta``
    (sign of a) while the earlier steps emitted K each; it emits as long as that potential is
    outside ``[-d, d)``. A step that emits fewer than K leaves at most half a threshold, which
    never fires again. So the level is ``sign(n0) min(|n0|, J K)`` with J the steps that fire:
    ``J = min(T, floor((a - d) / (K theta)) + 1)`` for a > 0 and
    ``J = min(T, ceil((|a| - d) / (K theta)))`` for a < 0 (``|a| - t K theta > d``). With
    ``d <= theta / 2`` this is the quantiser without a dead zone.
    """
    a = x * steps
    n0 = onset_level(x, threshold, steps)
    big = threshold * max_payload
    fire_pos = torch.floor((a - dead_zone) / big) + 1
    fire_neg = torch.ceil((-a - dead_zone) / big)
    fires = torch.where(a >= 0, fire_pos, fire_neg).clamp(0, steps)
    silent = dead_zone_mask(a, dead_zone)
    level = torch.sign(n0) * torch.minimum(n0.abs(), fires * max_payload)
    return level.masked_fill(silent, 0.0)


def dead_zone_levels(dead_zone: Any, unit: Any, name: str) -> Any:
    """The integer dead zone D of a chip neuron whose potential counts in ``unit`` (value per
    integer step): the float band ``[-d, d)`` holds exactly the integer potentials with
    ``|v| < D`` when ``d = (D - 1/2) unit``, so ``D = d / unit + 1/2`` must be an integer
    (>= 1; D = 1 is no dead zone). A StacError naming ``name`` otherwise."""
    rel = np.asarray(dead_zone, np.float64) / np.asarray(unit, np.float64) + 0.5
    levels = np.round(rel)
    if np.any(np.abs(rel - levels) > 1e-6 * np.maximum(1.0, levels)) or np.any(levels < 1):
        raise StacError(
            f"{name}: its dead zone is not (D - 1/2) potential units for an integer D >= 1 "
            f"(worst {float(np.max(np.abs(rel - levels))):.3g} off), so the chip cannot hold it; "
            "snap it with stac.sim.neurons.snap_dead_zone"
        )
    return levels.astype(np.int64)


def snap_dead_zone(dead_zone: Any, unit: Any) -> Any:
    """The representable dead zone nearest to ``dead_zone``: ``(D - 1/2) unit`` with
    ``D = max(1, round(d / unit + 1/2))``."""
    unit = np.asarray(unit, np.float64)
    levels = np.maximum(1.0, np.round(np.asarray(dead_zone, np.float64) / unit + 0.5))
    return (levels - 0.5) * unit


# --- integer -----------------------------------------------------------------------------------


class SignedIFFixedState(NamedTuple):
    v: Tensor  # membrane potential, state_bits, saturating


def signed_if_int_update(
    v: Any, x: Any, theta: Any, v_max: int, max_payload: int, dead: Any = None
) -> tuple[Any, Any]:
    """The integer rule on numpy arrays or torch tensors of integers: (payloads, new v).

    ``s = clamp(floor((2v + theta) / (2 theta)), -K, K)``: the potential in thresholds,
    rounded half up, exactly (the float rule is ``floor(v / theta + 0.5)``). With ``dead`` D
    (integers, :func:`dead_zone_levels`), a potential with ``|v| < D`` emits nothing: the
    float band ``[-(D - 1/2), D - 1/2)`` on the integer grid.
    """
    v = (v + x).clip(-v_max, v_max)
    s = ((2 * v + theta) // (2 * theta)).clip(-max_payload, max_payload)
    if dead is not None:
        s = s * ((v >= dead) | (v <= -dead))
    return s, v - s * theta


def signed_if_fixed_step(
    x: Tensor,
    state: SignedIFFixedState,
    theta: Tensor,
    fmt: LoihiFormat,
    max_payload: int = 1,
    dead: Tensor | None = None,
) -> tuple[Tensor, SignedIFFixedState]:
    """One timestep of the integer SignedIF in ``fmt``'s ``state_bits`` potential; returns
    (payloads in [-K, K], new state). K = 1 gives binary signed spikes; ``dead``: the integer
    dead zone D (see :func:`signed_if_int_update`)."""
    s, v = signed_if_int_update(state.v, as_int(x), theta, fmt.uv_max - 1, max_payload, dead)
    return s, SignedIFFixedState(v)


def signed_if_fixed_scan(
    drive: Tensor,
    theta: Tensor,
    steps: int,
    fmt: LoihiFormat,
    per_step: bool = False,
    max_payload: int = 1,
    onset: bool = False,
    dead: Tensor | None = None,
) -> Tensor:
    """``steps`` timesteps from v = 0, as :func:`signed_if_scan` takes its drive (held, per
    step, or with ``onset`` ``steps * drive`` at the first step only); returns the payloads
    ``[steps, ...]``. ``dead``: the integer dead zone D per neuron, or None."""
    if onset and per_step:
        raise StacError("onset drive takes one value per token, not one per step")
    drive = as_int(drive)
    first = drive[0] if per_step else drive
    if per_step:
        inputs = drive[:steps]
    elif onset:
        inputs = torch.cat(
            [(first * steps)[None], torch.zeros_like(first).expand(steps - 1, *first.shape)]
        )
    else:
        inputs = first.expand(steps, *first.shape)
    out, _ = scan(
        lambda x, st: signed_if_fixed_step(x, st, theta, fmt, max_payload, dead),
        inputs,
        SignedIFFixedState(torch.zeros_like(first)),
    )
    return out


def quantise_drive(
    x: Tensor, threshold: Tensor, fmt: LoihiFormat, headroom: int = 4
) -> tuple[Tensor, Tensor]:
    """Map a float drive and per-neuron thresholds onto integers: ``(x_q, theta_q)``.

    Every threshold becomes ``theta_q = 2**(state_bits - 1 - ceil(log2(headroom)))`` (2**21
    for 24-bit state and the default headroom 4) and the drive is scaled by the same factor
    per neuron, rounded to nearest and saturated to the v range. The potential then holds
    ``headroom`` thresholds before it saturates: 4 covers a held drive of up to twice the
    threshold; an onset drive (T steps of drive at once) with payloads up to K needs about
    ``T * K + 1``. The spike values are ``theta`` (float), so the grid only sets how finely
    the drive is resolved (1 / theta_q of a threshold).
    """
    if headroom < 2:
        raise StacError(f"headroom must be at least 2 thresholds, got {headroom}")
    shift_bits = fmt.state_bits - 1 - (int(headroom) - 1).bit_length()
    if shift_bits < 1:
        raise StacError(f"a {fmt.state_bits}-bit potential cannot hold {headroom} thresholds")
    theta_q = 1 << shift_bits
    scale = theta_q / threshold.to(torch.float64)
    x_q = torch.round(x.to(torch.float64) * scale).clamp(-(fmt.uv_max - 1), fmt.uv_max - 1)
    return x_q.to(torch.int64), torch.full_like(threshold, theta_q, dtype=torch.int64)


__all__ = [
    "SignedIFFixedState",
    "SignedIFState",
    "dead_zone_levels",
    "dead_zone_mask",
    "onset_dead_zone_level",
    "snap_dead_zone",
    "onset_level",
    "onset_quantiser",
    "quantise_drive",
    "rounded_level",
    "signed_if_fixed_scan",
    "signed_if_fixed_step",
    "signed_if_int_update",
    "signed_if_scan",
    "signed_if_step",
]
