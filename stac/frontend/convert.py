"""ANN -> SNN conversion: calibrate encoder thresholds on real text, then lower to the IR."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import nir
import numpy as np
import torch
from tqdm import tqdm

from stac import __version__
from stac.errors import StacError
from stac.frontend import gpt2, llama
from stac.frontend.models import LoadedModel
from stac.frontend.text import calibration_windows

log = logging.getLogger(__name__)

MODES = ("simplified",)
MIN_T, MAX_T = 1, 256
_FAMILIES = {"gpt2": gpt2, "llama": llama}


@dataclass(frozen=True)
class ConversionConfig:
    """What the conversion does; saved in the artifact's config.json."""

    timesteps: int = 16  # T, timesteps per token
    mode: str = "simplified"  # see MODES
    calibration_passages: int = 16  # windows of real text used to set thresholds
    calibration_max_tokens: int = 128  # tokens per window
    token_gain: bool = False  # host-side per-token threshold gain on every encoder

    def __post_init__(self) -> None:
        if not MIN_T <= self.timesteps <= MAX_T:
            raise StacError(
                f"timesteps T={self.timesteps} is outside the supported range {MIN_T}..{MAX_T}"
            )
        if self.mode not in MODES:
            raise StacError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.calibration_passages < 1:
            raise StacError("calibration needs at least one passage")


@torch.no_grad()
def calibrate(loaded: LoadedModel, cfg: ConversionConfig) -> dict[str, np.ndarray]:
    """Per-channel absolute maximum of every encoder's input over the calibration text.

    Each SignedIF threshold is that maximum, so the encoder saturates on no calibration value
    and quantises to a step of threshold / T.
    """
    modules = _FAMILIES[loaded.family].neuron_inputs(loaded.model)
    peaks: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in modules.items():
        def hook(mod: Any, args: tuple, name: str = name) -> None:
            x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0)
            peaks[name] = torch.maximum(peaks[name], x) if name in peaks else x
        hooks.append(module.register_forward_pre_hook(hook))
    try:
        chunks = calibration_windows(
            loaded.tokenizer, cfg.calibration_passages, cfg.calibration_max_tokens
        )
        for ids in tqdm(chunks, desc="calibrating", unit="window", leave=False):
            loaded.model(ids[None])
    finally:
        for h in hooks:
            h.remove()
    # A channel that never fired during calibration still needs a positive threshold.
    return {k: np.maximum(v.numpy().astype(np.float32), 1e-6) for k, v in peaks.items()}


def convert(loaded: LoadedModel, cfg: ConversionConfig) -> nir.NIRGraph:
    """Calibrate and lower ``loaded`` into an IR graph carrying ``cfg`` in its metadata."""
    thresholds = calibrate(loaded, cfg)
    metadata = {
        "stac_version": __version__,
        "source_model": loaded.source,
        "family": loaded.family,
        "conversion": asdict(cfg),
        "vocab_size": int(loaded.model.config.vocab_size),
        "max_positions": int(_max_positions(loaded.model.config)),
    }
    graph = _FAMILIES[loaded.family].lower(loaded.model, thresholds, metadata)
    log.info("lowered %s to %d nodes, %d edges", loaded.source, len(graph.nodes), len(graph.edges))
    return graph


def _max_positions(config: Any) -> int:
    for key in ("n_positions", "max_position_embeddings"):
        if getattr(config, key, None):
            return getattr(config, key)
    raise StacError("the model config states no maximum context length")
