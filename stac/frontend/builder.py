"""A small helper to assemble IR graphs in data-flow order, shared by the model families."""

from __future__ import annotations

from typing import Any, Protocol

import nir
import numpy as np
import torch

from stac.ir.graph import make_graph
from stac.ir.nodes import Rotation, SignedIF


def as_array(tensor: torch.Tensor) -> np.ndarray:
    """A float32 numpy copy of a parameter (the IR owns its arrays)."""
    return tensor.detach().to(torch.float32).cpu().numpy().copy()


class EncoderPlan(Protocol):
    """What the conversion decided for each spiking linear map (:mod:`stac.frontend.convert`)."""

    def encoder(self, name: str) -> SignedIF:
        """The SignedIF encoder named ``name`` (``{linear}_in``)."""

    def rotation(self, name: str, size: int) -> Rotation | None:
        """The host rotation in front of encoder ``name`` (of ``size`` inputs), or None."""

    def weight(
        self, name: str, weight: np.ndarray, encoder: SignedIF
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """The weight the chip holds for linear map ``name`` fed by ``encoder``, and metadata
        describing its quantisation (empty when the weight stays float)."""


class GraphBuilder:
    """Collects nodes and edges; ``add(name, node, *inputs)`` returns ``name`` for chaining."""

    def __init__(self, plan: EncoderPlan) -> None:
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.plan = plan

    def add(self, name: str, node: Any, *inputs: str) -> str:
        if name in self.nodes:
            raise ValueError(f"node {name!r} added twice")
        self.nodes[name] = node
        self.edges.extend((src, name) for src in inputs)
        return name

    def spiking_linear(
        self, name: str, weight: np.ndarray, bias: np.ndarray | None, source: str
    ) -> str:
        """SignedIF encoder ``{name}_in`` feeding a linear map ``name`` (Linear or Affine),
        behind a host :class:`~stac.ir.nodes.Rotation` ``{name}_rotate`` when the plan has one
        (the plan then gives the map the rotated weight)."""
        rotation = self.plan.rotation(f"{name}_in", weight.shape[1])
        if rotation is not None:
            source = self.add(f"{name}_rotate", rotation, source)
        encoder = self.plan.encoder(f"{name}_in")
        neuron = self.add(f"{name}_in", encoder, source)
        weight, quant = self.plan.weight(name, weight, encoder)
        node = nir.Linear(weight) if bias is None else nir.Affine(weight, bias)
        if quant:
            node.metadata["quant"] = quant
        return self.add(name, node, neuron)

    def graph(self, metadata: dict[str, Any]) -> nir.NIRGraph:
        return make_graph(self.nodes, self.edges, metadata)


def input_node() -> nir.Input:
    return nir.Input(input_type=np.array([1]))
