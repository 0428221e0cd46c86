"""ANN -> SNN conversion: calibrate encoder thresholds on real text, then lower to the IR."""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import nir
import numpy as np
import torch

from stac import __version__
from stac.errors import StacError
from stac.frontend import gpt2, llama
from stac.cache import cached
from stac.frontend.calibrate import (
    ChannelStats,
    cache_key,
    channel_stats,
    input_hessians,
    optimise_steps,
    stats_from_tensors,
    stats_to_tensors,
)
from stac.frontend.models import LoadedModel
from stac.frontend.readout import add_readouts
from stac.ir.nodes import Rotation, SignedIF
from stac.limits import MAX_T, MIN_T  # re-exported: stac.frontend.convert.MAX_T still works
from stac.quant import dequantise, load_rounded, quantise_weight, quantise_weight_gptq, save_rounded
from stac.frontend.text import calibration_windows

log = logging.getLogger(__name__)

MODES = ("simplified", "full")
#: Full-mode weight rounding: error-feedback rounding against the calibration inputs (GPTQ), or
#: rounding each weight to nearest.
WEIGHT_ROUNDING = ("gptq", "rtn")
#: Full mode: what a graded spike's payload counts in. ``layer``: units of the layer's smallest
#: threshold (the spike carries its count shifted by its channel's exponent, so the widest
#: channel sets the payload width and may be capped); ``channel``: units of its own channel's
#: threshold (the spike carries its count; the channel's power of two lives in the synapses, one
#: weight exponent per group of channels with one threshold, so no channel is capped).
PAYLOAD_SCALES = ("layer", "channel")
_FAMILIES = {"gpt2": gpt2, "llama": llama}
#: ``--rotate``'s default clip: each token's step covers 0.9 of its largest rotated value, the
#: activation clip ratio of QuaRot (Ashkboos et al. 2024); compiled SmolLM2 at T = 16: ratio
#: 1.1035, KL 0.143, against 1.1437 and 0.164 with no clip (docs/training.md).
ROTATE_CLIP = 0.9
#: How rotations are drawn (part of the weight-rounding cache key: change it with the drawing).
ROTATION_SEEDING = "crc32(encoder name), signs then Haar mix"


@dataclass(frozen=True)
class ConversionConfig:
    """What the conversion does; saved in the artifact's config.json.

    ``simplified``: binary rate-coded encoders held at their drive for T steps, thresholds at
    the calibrated absolute maximum, float weights. ``full``: weights quantised to
    ``weight_bits`` per output row; onset-driven graded encoders whose per-channel step is
    optimised against the float activations with ``2 T K + 1`` levels,
    K = 2**(payload_bits - 1) - 1, then rounded down to a power of two; each layer's payload
    is then widened
    until its largest calibrated value times ``headroom`` fits without clipping (binary
    spikes, ``payload_bits = 1``, are never widened).
    """

    timesteps: int = 16  # T, timesteps per token
    mode: str = "simplified"  # see MODES
    calibration_passages: int = 16  # windows of real text used to set thresholds
    calibration_max_tokens: int = 128  # tokens per window
    token_gain: bool = False  # host-side per-token threshold gain on every encoder
    weight_bits: int = 8  # full mode: synaptic weight bits (the profile's)
    payload_bits: int = 8  # full mode: graded spike bits that set the resolution (1 = binary)
    headroom: float = 4.0  # full mode: payload covers this times the calibrated maximum
    max_spike_bits: int = 32  # full mode: widest graded spike the target carries (Loihi 2: 32)
    weight_rounding: str = "gptq"  # full mode: "gptq" (error feedback) or "rtn" (nearest)
    payload_scale: str = "layer"  # full mode: see PAYLOAD_SCALES
    readout_bits: int | None = None  # full mode: values leaving the chip as graded spikes of
    # this many bits (stac.ir.nodes.Readout); None: the linear maps' sums, unbounded
    rotate: bool = False  # full mode, binary spikes: a host Hadamard rotation in front of every
    # encoder, the map holding W R, and one step per token (see FullPlan.rotation)
    rotate_clip: float = ROTATE_CLIP  # with rotate: the token's step covers this fraction of
    # its largest rotated value

    def __post_init__(self) -> None:
        if not MIN_T <= self.timesteps <= MAX_T:
            raise StacError(
                f"timesteps T={self.timesteps} is outside the supported range {MIN_T}..{MAX_T}"
            )
        if self.mode not in MODES:
            raise StacError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.calibration_passages < 1:
            raise StacError("calibration needs at least one passage")
        if not 2 <= self.weight_bits <= 16:
            raise StacError(f"weight bits {self.weight_bits} outside 2..16")
        if not 1 <= self.payload_bits <= 24:
            raise StacError(f"payload bits {self.payload_bits} outside 1..24")
        if not self.headroom >= 1.0:
            raise StacError(f"headroom {self.headroom} must be at least 1")
        if self.weight_rounding not in WEIGHT_ROUNDING:
            raise StacError(
                f"weight rounding {self.weight_rounding!r} is not one of "
                f"{', '.join(WEIGHT_ROUNDING)}"
            )
        if self.payload_scale not in PAYLOAD_SCALES:
            raise StacError(
                f"payload scale {self.payload_scale!r} is not one of {', '.join(PAYLOAD_SCALES)}"
            )
        if self.readout_bits is not None and not 2 <= self.readout_bits <= self.max_spike_bits:
            raise StacError(
                f"readout bits {self.readout_bits} outside 2..{self.max_spike_bits} (the "
                "target's widest graded spike)"
            )
        if self.rotate and (self.mode != "full" or self.payload_bits != 1 or self.token_gain):
            raise StacError(
                "--rotate needs --mode full with binary spikes (--payload-bits 1) and no "
                "--token-gain (it sets each rotated encoder's per-token step itself)"
            )
        if self.rotate and self.readout_bits is not None:
            raise StacError(
                "--rotate and --readout-bits do not combine: a rotated encoder's per-token gain "
                "scales the sums a readout would have to bound"
            )
        if not 0 < self.rotate_clip <= 1:
            raise StacError(f"rotate clip {self.rotate_clip} must be in (0, 1]")
        if self.mode == "simplified" and (
            (self.payload_bits, self.weight_bits) != (8, 8)
            or self.weight_rounding != "gptq"
            or self.payload_scale != "layer"
            or self.readout_bits is not None
        ):
            raise StacError(
                "--payload-bits, --weight-bits, --weight-rounding, --payload-scale and "
                "--readout-bits apply to --mode full only"
            )

    @property
    def base_payload(self) -> int:
        """K at ``payload_bits``: 1 for binary spikes, else the largest signed magnitude."""
        return 1 if self.payload_bits == 1 else 2 ** (self.payload_bits - 1) - 1


class SimplifiedPlan:
    """Binary encoders at the calibrated absmax, held drive; weights stay float."""

    def __init__(self, stats: dict[str, ChannelStats], cfg: ConversionConfig) -> None:
        self.stats, self.cfg = stats, cfg

    def encoder(self, name: str) -> SignedIF:
        # A channel that never fired during calibration still needs a positive threshold.
        theta = np.maximum(self.stats[name].absmax.numpy().astype(np.float32), 1e-6)
        return SignedIF(theta, self.cfg.token_gain)

    def rotation(self, name: str, size: int) -> Rotation | None:  # noqa: ARG002 - none here
        return None

    def weight(
        self,
        name: str,  # noqa: ARG002 - the coder interface; simplified mode keeps float weights
        weight: np.ndarray,
        encoder: SignedIF,  # noqa: ARG002
    ) -> tuple[np.ndarray, dict[str, Any]]:
        return weight, {}


class FullPlan:
    """Graded onset-driven encoders with optimised steps rounded down to powers of two; weights
    quantised per output row. A spike carries its count shifted by its channel's exponent, so
    the synapses hold the model's own weights on an integer grid."""

    def __init__(
        self,
        stats: dict[str, ChannelStats],
        steps: dict[str, torch.Tensor],
        cfg: ConversionConfig,
        hessians: dict[str, torch.Tensor] | None = None,
        rounded: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        self.stats, self.steps, self.cfg = stats, steps, cfg
        self.hessians = hessians or {}
        # GPTQ results by map name, from the cache (stac.cache), and those computed here.
        self.rounded = rounded
        self.rounded_now: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.rotations: dict[str, Rotation] = {}

    def rotation(self, name: str, size: int) -> Rotation | None:
        """With ``rotate``: a randomised Hadamard rotation of encoder ``name``'s input, seeded
        by the name. Binary spikes give a value ``2 T + 1`` levels; a static step per channel
        must cover the rare outlier tokens (the BOS sink) and rounds the rest coarsely, and
        one step per token is ruled by the token's outlier channels. Rotated, the outliers
        spread over every channel, so the encoder's thresholds are all 1 and the host sets the
        token's step (its gain, with floor 0 and ratio ``rotate_clip``)."""
        if not self.cfg.rotate:
            return None
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        self.rotations[name] = Rotation.random(size, rng)
        return self.rotations[name]

    def encoder(self, name: str) -> SignedIF:
        if name in self.rotations:
            return SignedIF(
                np.ones(self.rotations[name].size, np.float32),
                token_gain=True,
                gain_ratio=self.cfg.rotate_clip,
                gain_floor=0.0,
                onset_drive=True,
                metadata={
                    "quant": {
                        "scheme": "rotated, step per token",
                        "note": "the host rotates the drive (the preceding Rotation), scales "
                        "it by the token's gain and divides by the threshold 1; the map holds "
                        "W R; it multiplies the map's sums by the gain when it reads them",
                    }
                },
            )
        t = self.cfg.timesteps
        # A power-of-two step (never coarser than the optimum) makes every spike value an
        # integer shift of the layer's smallest one.
        step = self.steps[name]
        if self.cfg.base_payload > 1:  # binary spikes carry no payload: their value is free
            step = torch.exp2(torch.floor(torch.log2(step.clamp_min(1e-30))))
        theta = (step * t).to(torch.float32).numpy()
        # Binary spikes (payload_bits = 1) stay binary: the pure-spiking baseline. Graded ones
        # get the payload that carries the largest calibrated value (BOS sink included) times
        # the headroom within T steps, at least the base payload.
        need = self.cfg.headroom * self.stats[name].absmax / (step * t)
        k = (
            1
            if self.cfg.base_payload == 1
            else max(self.cfg.base_payload, int(math.ceil(float(need.max()))))
        )
        quant: dict[str, Any] = {}
        if k > 1:
            # A spike carries K * theta_max / theta_min in units of the smallest threshold
            # (per-layer scale) or K in units of its own (per-channel scale); keep that within
            # the target's payload, at the price of less headroom.
            per_channel = self.cfg.payload_scale == "channel"
            spread = 1.0 if per_channel else float(theta.max() / theta.min())
            if per_channel:
                quant["payload_scale"] = "channel"
            fit = int((2 ** (self.cfg.max_spike_bits - 1) - 1) // spread)
            if fit < k:
                cover = self.cfg.headroom * fit / k
                log.warning(
                    "%s: payload capped to %d bits; it covers %.3gx the calibrated "
                    "maximum instead of %gx",
                    name,
                    self.cfg.max_spike_bits,
                    cover,
                    self.cfg.headroom,
                )
                quant["payload_capped"] = {"covers": cover, "wanted_k": k}
                k = max(fit, 1)
        return SignedIF(
            theta,
            max_payload=k,
            onset_drive=True,
            metadata={
                "quant": {
                    **quant,
                    "scheme": "host-scaled",
                    "note": "the host divides each drive by its threshold; the chip threshold "
                    "is 1; "
                    + (
                        "a spike's payload is its count; its channel's exponent is in the "
                        "synapses (one weight exponent per threshold group)"
                        if quant.get("payload_scale") == "channel"
                        else "a spike's payload is its count shifted by its channel's exponent"
                    ),
                }
            },
        )

    def weight(
        self,
        name: str,
        weight: np.ndarray,
        encoder: SignedIF,  # noqa: ARG002 - the coder interface; the rounding needs no encoder
    ) -> tuple[np.ndarray, dict[str, Any]]:
        hessian = self.hessians.pop(f"{name}_in", None)
        rotation = self.rotations.get(f"{name}_in")
        if rotation is not None:  # the map reads x R: it holds W R, and GPTQ weighs by R^T H R
            r = rotation.matrix()
            weight = (weight.astype(np.float64) @ r).astype(np.float32)
            if hessian is not None:
                hessian = torch.from_numpy(r.T) @ hessian.to(torch.float64) @ torch.from_numpy(r)
        gptq = self.cfg.weight_rounding == "gptq" and hessian is not None
        if self.rounded is not None and name in self.rounded:
            q, scale = self.rounded[name]
            gptq = True
        elif gptq:
            q, scale = quantise_weight_gptq(weight, hessian, self.cfg.weight_bits)
            self.rounded_now[name] = (q, scale)
        else:
            q, scale = quantise_weight(weight, self.cfg.weight_bits)
        effective = dequantise(q, scale)
        err = float(np.linalg.norm(effective - weight)) / max(float(np.linalg.norm(weight)), 1e-30)
        return effective, {
            "bits": self.cfg.weight_bits,
            "scheme": "per-channel",
            "rounding": "gptq" if gptq else "nearest",
            "scale": scale,
            "relative_error": float(err),
        }


def convert(loaded: LoadedModel, cfg: ConversionConfig) -> nir.NIRGraph:
    """Calibrate and lower ``loaded`` into an IR graph carrying ``cfg`` in its metadata."""
    family = _FAMILIES[loaded.family]
    modules = family.neuron_inputs(loaded.model)
    chunks = calibration_windows(
        loaded.tokenizer, cfg.calibration_passages, cfg.calibration_max_tokens
    )
    key = cache_key(loaded.model, chunks)  # None unless inside stac.cache.caching()
    stats = cached(
        "stats",
        key,
        lambda: channel_stats(loaded.model, modules, chunks),
        stats_to_tensors,
        stats_from_tensors,
    )
    plan: SimplifiedPlan | FullPlan
    if cfg.mode == "simplified":
        plan = SimplifiedPlan(stats, cfg)
    else:
        levels = cfg.timesteps * cfg.base_payload
        with_bos = cfg.base_payload == 1
        steps = (
            {}  # every encoder is rotated, with its step set per token
            if cfg.rotate
            else cached(
                "steps",
                None if key is None else {**key, "levels": levels, "with_bos": with_bos},
                lambda: optimise_steps(loaded.model, modules, chunks, stats, levels, with_bos),
                _same,
                _same,
            )
        )
        gptq_key = None if key is None else {**key, "weight_bits": cfg.weight_bits}
        if gptq_key is not None and cfg.rotate:  # rotated maps round differently
            gptq_key["rotate"] = ROTATION_SEEDING
        rounded = load_rounded(gptq_key) if cfg.weight_rounding == "gptq" else None
        hessians = (
            input_hessians(loaded.model, modules, chunks)
            if cfg.weight_rounding == "gptq" and rounded is None
            else None
        )
        plan = FullPlan(stats, steps, cfg, hessians, rounded)
    metadata = {
        "stac_version": __version__,
        "source_model": loaded.source,
        "family": loaded.family,
        "conversion": asdict(cfg),
        "vocab_size": int(loaded.model.config.vocab_size),
        "max_positions": int(_max_positions(loaded.model.config)),
    }
    graph = family.lower(loaded.model, plan, metadata)
    if cfg.readout_bits is not None:
        graph = add_readouts(graph, chunks, cfg.timesteps, cfg.readout_bits, cfg.headroom)
    if isinstance(plan, FullPlan) and plan.rounded_now:
        save_rounded(gptq_key, plan.rounded_now)
    log.info("lowered %s to %d nodes, %d edges", loaded.source, len(graph.nodes), len(graph.edges))
    return graph


def _same(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return tensors


def _max_positions(config: Any) -> int:
    for key in ("n_positions", "max_position_embeddings"):
        if getattr(config, key, None):
            return getattr(config, key)
    raise StacError("the model config states no maximum context length")
