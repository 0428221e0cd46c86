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

import torch

from stac.errors import StacError
from stac.sim.fixed_point import LoihiFormat, as_int, scan

Tensor = torch.Tensor


# --- float -------------------------------------------------------------------------------------


class SignedIFState(NamedTuple):
    v: torch.Tensor  # membrane potential, same shape as the input


def rounded_level(v: Tensor, threshold: Tensor) -> Tensor:
    """``floor(v / theta + 1/2)``: the potential in thresholds, rounded half up (float rule)."""
    return torch.floor(v / threshold + 0.5)


def signed_if_step(
    x: torch.Tensor, state: SignedIFState, threshold: torch.Tensor, max_payload: int = 1
) -> tuple[torch.Tensor, SignedIFState]:
    """One timestep of :class:`stac.ir.nodes.SignedIF`; returns (payloads in [-K, K], state).

    The payload is the membrane potential in units of the threshold, rounded half up and
    clipped to ``max_payload``; K = 1 fires +1 at ``v >= theta/2`` and -1 below ``-theta/2``.
    """
    v = state.v + x
    s = rounded_level(v, threshold).clamp_(-max_payload, max_payload)
    return s, SignedIFState(v - s * threshold)


def signed_if_scan(
    drive: torch.Tensor,
    threshold: torch.Tensor,
    steps: int,
    per_step: bool,
    max_payload: int = 1,
    onset: bool = False,
) -> torch.Tensor:
    """Run ``steps`` timesteps from v = 0 and return the payloads, shape ``[steps, ...]``.

    ``drive`` is one current held for all steps (``per_step=False``, shape ``[..., n]``), a
    current per step (``per_step=True``, shape ``[steps, ..., n]``), or with ``onset`` one
    current ``steps * drive`` delivered at the first step and nothing after (the drive's mean
    over the steps is the same in all three cases).
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
        s, state = signed_if_step(x, state, threshold, max_payload)
        spikes.append(s)
    return torch.stack(spikes)


def onset_level(x: Tensor, threshold: Tensor, steps: int) -> Tensor:
    """``floor(T x / theta + 1/2)`` with the float operations of the scan's first step: the
    total payload an onset-driven neuron emits before the cap ``T K`` (see the module
    docstring)."""
    return rounded_level(x * steps, threshold)


def onset_quantiser(x: Tensor, threshold: Tensor, steps: int, max_payload: int) -> Tensor:
    """The closed form of :func:`signed_if_scan` with ``onset``: its T-step mean output
    ``clamp(floor(T x / theta + 1/2), -T K, T K) * theta / T``."""
    cap = steps * max_payload
    return onset_level(x, threshold, steps).clamp(-cap, cap) * threshold / steps


# --- integer -----------------------------------------------------------------------------------


class SignedIFFixedState(NamedTuple):
    v: Tensor  # membrane potential, state_bits, saturating


def signed_if_int_update(
    v: Any, x: Any, theta: Any, v_max: int, max_payload: int
) -> tuple[Any, Any]:
    """The integer rule on numpy arrays or torch tensors of integers: (payloads, new v).

    ``s = clamp(floor((2v + theta) / (2 theta)), -K, K)``: the potential in thresholds,
    rounded half up, exactly (the float rule is ``floor(v / theta + 0.5)``).
    """
    v = (v + x).clip(-v_max, v_max)
    s = ((2 * v + theta) // (2 * theta)).clip(-max_payload, max_payload)
    return s, v - s * theta


def signed_if_fixed_step(
    x: Tensor, state: SignedIFFixedState, theta: Tensor, fmt: LoihiFormat, max_payload: int = 1
) -> tuple[Tensor, SignedIFFixedState]:
    """One timestep of the integer SignedIF in ``fmt``'s ``state_bits`` potential; returns
    (payloads in [-K, K], new state). K = 1 gives binary signed spikes."""
    s, v = signed_if_int_update(state.v, as_int(x), theta, fmt.uv_max - 1, max_payload)
    return s, SignedIFFixedState(v)


def signed_if_fixed_scan(
    drive: Tensor,
    theta: Tensor,
    steps: int,
    fmt: LoihiFormat,
    per_step: bool = False,
    max_payload: int = 1,
    onset: bool = False,
) -> Tensor:
    """``steps`` timesteps from v = 0, as :func:`signed_if_scan` takes its drive (held, per
    step, or with ``onset`` ``steps * drive`` at the first step only); returns the payloads
    ``[steps, ...]``."""
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
        lambda x, st: signed_if_fixed_step(x, st, theta, fmt, max_payload),
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
