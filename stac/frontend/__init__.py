"""Frontend: load Hugging Face causal LMs, calibrate, and lower them to stac's IR."""

from stac.frontend.convert import ConversionConfig, convert
from stac.frontend.models import BUNDLED, LoadedModel, load_model

__all__ = ["BUNDLED", "ConversionConfig", "LoadedModel", "convert", "load_model"]
