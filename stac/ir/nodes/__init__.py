"""stac's own node types, one family per file."""

from stac.ir.nodes.adex import AdEx
from stac.ir.nodes.attention import CausalSelfAttention
from stac.ir.nodes.base import StacNode, stac_node_types
from stac.ir.nodes.elementwise import ACTIVATIONS, Activation, GatedActivation, Residual
from stac.ir.nodes.embedding import Embedding
from stac.ir.nodes.loihi_cuba import LoihiCubaLIF
from stac.ir.nodes.neurons import SignedIF
from stac.ir.nodes.norm import LayerNorm, RMSNorm
from stac.ir.nodes.readout import Readout
from stac.ir.nodes.rotation import Rotation
from stac.ir.nodes.sigma_delta import SIGMA_DELTA_ACTIVATIONS, SigmaDelta

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "AdEx",
    "CausalSelfAttention",
    "Embedding",
    "GatedActivation",
    "LayerNorm",
    "LoihiCubaLIF",
    "RMSNorm",
    "Readout",
    "Residual",
    "Rotation",
    "SIGMA_DELTA_ACTIVATIONS",
    "SigmaDelta",
    "SignedIF",
    "StacNode",
    "stac_node_types",
]
