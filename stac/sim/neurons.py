"""Neuron dynamics as pure step functions over explicit state, and their scans over T."""

from __future__ import annotations

from typing import NamedTuple

import torch


class SignedIFState(NamedTuple):
    v: torch.Tensor  # membrane potential, same shape as the input


def signed_if_step(
    x: torch.Tensor, state: SignedIFState, threshold: torch.Tensor, max_payload: int = 1
) -> tuple[torch.Tensor, SignedIFState]:
    """One timestep of :class:`stac.ir.nodes.SignedIF`; returns (payloads in [-K, K], state).

    The payload is the membrane potential in units of the threshold, rounded half up and
    clipped to ``max_payload``; K = 1 fires +1 at ``v >= theta/2`` and -1 below ``-theta/2``.
    """
    v = state.v + x
    s = torch.floor(v / threshold + 0.5).clamp_(-max_payload, max_payload)
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
