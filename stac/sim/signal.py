"""What travels along an edge in the simulator."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Signal:
    """A value on an edge for a batch of tokens.

    ``per_step`` signals hold one value per timestep, shape ``[T, B, N, F]``; the others hold one
    value that is the same at every timestep, shape ``[B, N, F]`` (a constant drive, or the
    result of an op evaluated once on accumulated input). Either way the value the signal
    represents is its mean over the T steps.
    """

    value: torch.Tensor
    per_step: bool
    events: bool = False  # True when the per-step values are spike payloads (mostly zero)

    def mean(self) -> torch.Tensor:
        return self.value.mean(0) if self.per_step else self.value

    def __add__(self, other: "Signal") -> "Signal":
        if self.per_step == other.per_step:
            return Signal(self.value + other.value, self.per_step)
        return Signal(
            (self.value if self.per_step else other.value)
            + (other.value if self.per_step else self.value),
            True,
        )
