"""stac: a deployment compiler that turns Hugging Face causal LMs into spiking networks."""

__version__ = "0.1.0"

from stac.errors import StacError

__all__ = ["StacError", "__version__"]
