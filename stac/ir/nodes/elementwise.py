"""Elementwise nonlinearities, the gated product, and the residual junction."""

from __future__ import annotations

from dataclasses import dataclass

from stac.ir.nodes.base import StacNode, check_positive

ACTIVATIONS = ("gelu_tanh", "gelu", "silu", "relu")


@dataclass(frozen=True, eq=False)
class Activation(StacNode):
    """``y = f(x)`` for f in :data:`ACTIVATIONS` (``gelu_tanh`` is GPT-2's ``gelu_new``)."""

    size: int  # vector length
    kind: str  # one of ACTIVATIONS

    def __post_init__(self) -> None:
        check_positive("Activation", "size", self.size)
        if self.kind not in ACTIVATIONS:
            raise ValueError(f"Activation.kind {self.kind!r} is not one of {ACTIVATIONS}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.size,)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.size,)


@dataclass(frozen=True, eq=False)
class GatedActivation(StacNode):
    """``y = f(g) * u`` where the input is the concatenation ``[g, u]`` (Llama's SwiGLU).

    NIR edges have no ports, so the two operands arrive as one vector of length 2 * size.
    """

    size: int  # length of the output (half the input)
    kind: str  # f, one of ACTIVATIONS

    def __post_init__(self) -> None:
        check_positive("GatedActivation", "size", self.size)
        if self.kind not in ACTIVATIONS:
            raise ValueError(f"GatedActivation.kind {self.kind!r} is not one of {ACTIVATIONS}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (2 * self.size,)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.size,)


@dataclass(frozen=True, eq=False)
class Residual(StacNode):
    """Identity: the junction where a residual stream sums its incoming edges (NIR semantics)."""

    size: int  # vector length

    def __post_init__(self) -> None:
        check_positive("Residual", "size", self.size)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.size,)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.size,)
