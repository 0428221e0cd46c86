"""A small helper to assemble IR graphs in data-flow order, shared by the model families."""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch

from stac.ir.graph import make_graph
from stac.ir.nodes import SignedIF


def as_array(tensor: torch.Tensor) -> np.ndarray:
    """A float32 numpy copy of a parameter (the IR owns its arrays)."""
    return tensor.detach().to(torch.float32).cpu().numpy().copy()


class GraphBuilder:
    """Collects nodes and edges; ``add(name, node, *inputs)`` returns ``name`` for chaining."""

    def __init__(self, thresholds: dict[str, np.ndarray], token_gain: bool) -> None:
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.thresholds = thresholds
        self.token_gain = token_gain

    def add(self, name: str, node: Any, *inputs: str) -> str:
        if name in self.nodes:
            raise ValueError(f"node {name!r} added twice")
        self.nodes[name] = node
        self.edges.extend((src, name) for src in inputs)
        return name

    def spiking_linear(
        self, name: str, weight: np.ndarray, bias: np.ndarray | None, source: str
    ) -> str:
        """SignedIF encoder ``{name}_in`` feeding a linear map ``name`` (Linear or Affine)."""
        neuron = self.add(
            f"{name}_in", SignedIF(self.thresholds[f"{name}_in"], self.token_gain), source
        )
        node = nir.Linear(weight) if bias is None else nir.Affine(weight, bias)
        return self.add(name, node, neuron)

    def graph(self, metadata: dict[str, Any]) -> nir.NIRGraph:
        return make_graph(self.nodes, self.edges, metadata)


def input_node() -> nir.Input:
    return nir.Input(input_type=np.array([1]))
