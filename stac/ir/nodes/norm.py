"""Normalisation layers (host ops: they need a reduction over the whole vector)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stac.ir.nodes.base import StacNode, check_array, check_positive


@dataclass(frozen=True, eq=False)
class RMSNorm(StacNode):
    r""":math:`y = w \odot x / \sqrt{\mathrm{mean}(x^2) + \epsilon}` (Llama family)."""

    weight: np.ndarray  # gain, shape (n,)
    eps: float  # added to the mean square

    def __post_init__(self) -> None:
        check_array("RMSNorm", "weight", self.weight, ndim=1)
        check_positive("RMSNorm", "eps", self.eps)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (int(self.weight.shape[0]),)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.input_shape


@dataclass(frozen=True, eq=False)
class LayerNorm(StacNode):
    r""":math:`y = w \odot (x - \mu) / \sqrt{\sigma^2 + \epsilon} + b` (GPT-2 family)."""

    weight: np.ndarray  # gain, shape (n,)
    bias: np.ndarray  # shift, shape (n,)
    eps: float  # added to the variance

    def __post_init__(self) -> None:
        check_array("LayerNorm", "weight", self.weight, ndim=1)
        check_array("LayerNorm", "bias", self.bias, ndim=1)
        if self.weight.shape != self.bias.shape:
            raise ValueError(
                f"LayerNorm.weight {self.weight.shape} and bias {self.bias.shape} differ in shape"
            )
        check_positive("LayerNorm", "eps", self.eps)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (int(self.weight.shape[0]),)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.input_shape
