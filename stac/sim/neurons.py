"""Neuron dynamics as pure step functions over explicit state, and their scans over T."""

from __future__ import annotations

from typing import NamedTuple

import torch


class SignedIFState(NamedTuple):
    v: torch.Tensor  # membrane potential, same shape as the input


def signed_if_step(
    x: torch.Tensor, state: SignedIFState, threshold: torch.Tensor
) -> tuple[torch.Tensor, SignedIFState]:
    """One timestep of :class:`stac.ir.nodes.SignedIF`; returns (spikes in {-1,0,1}, state)."""
    v = state.v + x
    s = (v >= 0.5 * threshold).to(x.dtype) - (v < -0.5 * threshold).to(x.dtype)
    return s, SignedIFState(v - s * threshold)


def signed_if_scan(
    drive: torch.Tensor, threshold: torch.Tensor, steps: int, per_step: bool
) -> torch.Tensor:
    """Run ``steps`` timesteps from v = 0 and return the spikes, shape ``[steps, ...]``.

    ``drive`` is one current held for all steps (``per_step=False``, shape ``[..., n]``) or a
    current per step (``per_step=True``, shape ``[steps, ..., n]``).
    """
    first = drive[0] if per_step else drive
    state = SignedIFState(torch.zeros_like(first))
    spikes = []
    for t in range(steps):
        s, state = signed_if_step(drive[t] if per_step else drive, state, threshold)
        spikes.append(s)
    return torch.stack(spikes)
