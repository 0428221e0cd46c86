"""stac's one IR: an nir.NIRGraph with NIR nodes and stac nodes, its checks and its file."""

from stac.ir.graph import (
    VerifyError,
    input_shape,
    make_graph,
    output_shape,
    predecessors,
    successors,
    topo_order,
    verify,
)
from stac.ir.serialize import IRFormatError, load, save

__all__ = [
    "IRFormatError",
    "VerifyError",
    "input_shape",
    "load",
    "make_graph",
    "output_shape",
    "predecessors",
    "save",
    "successors",
    "topo_order",
    "verify",
]
