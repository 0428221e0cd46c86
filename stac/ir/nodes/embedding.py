"""Table lookups: token and learned position embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stac.ir.nodes.base import StacNode, check_array

INDICES = ("token", "position")


@dataclass(frozen=True, eq=False)
class Embedding(StacNode):
    """``y = weight[i]`` where i is the token id or the token's position (``index``)."""

    weight: np.ndarray  # table, shape (entries, dim)
    index: str = "token"  # what selects the row: "token" or "position"

    def __post_init__(self) -> None:
        check_array("Embedding", "weight", self.weight, ndim=2)
        if self.index not in INDICES:
            raise ValueError(f"Embedding.index {self.index!r} is not one of {INDICES}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1,)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (int(self.weight.shape[1]),)
