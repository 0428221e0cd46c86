"""Activation calibration on real text: per-channel statistics and threshold optimisation.

Simplified mode sets each encoder's threshold to the channel's absolute maximum. Full mode
chooses, per channel, the quantisation step that minimises the squared error against the float
activations of the calibration text, then gives the layer enough payload to carry the largest
value seen (times a headroom) without clipping.

Both passes run the Hugging Face model itself with forward pre-hooks on the modules whose
inputs the encoders carry, so the statistics are those of the float model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch
from tqdm import tqdm

from stac.sim.neurons import onset_quantiser

log = logging.getLogger(__name__)

#: Candidate clipping ranges, as fractions of a channel's calibrated maximum (BOS excluded).
CLIP_RATIOS = (1.0, 0.8, 0.6, 0.45, 0.35, 0.25, 0.18, 0.12, 0.08)


@dataclass
class ChannelStats:
    """Per-channel statistics of one encoder's input over the calibration text."""

    absmax: torch.Tensor  # over every token
    absmax_text: torch.Tensor  # over every token but the first of each window (the BOS sink)
    sumsq_text: torch.Tensor
    count_text: int

    @property
    def rms_text(self) -> torch.Tensor:
        return (self.sumsq_text / max(self.count_text, 1)).sqrt()


def _run_hooked(
    model: Any,
    modules: dict[str, torch.nn.Module],
    chunks: list[torch.Tensor],
    hook: Callable[[str, torch.Tensor], None],
    desc: str,
) -> None:
    handles = [
        module.register_forward_pre_hook(lambda _mod, args, name=name: hook(name, args[0][0]))
        for name, module in modules.items()
    ]
    try:
        for ids in tqdm(chunks, desc=desc, unit="window", leave=False):
            model(ids[None])
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def channel_stats(
    model: Any, modules: dict[str, torch.nn.Module], chunks: list[torch.Tensor]
) -> dict[str, ChannelStats]:
    """One pass over ``chunks`` (each BOS first) recording :class:`ChannelStats` per encoder."""
    stats: dict[str, ChannelStats] = {}

    def hook(name: str, x: torch.Tensor) -> None:  # x: [N, C] of one window
        x = x.detach().to(torch.float64)
        text = x[1:]
        new = ChannelStats(x.abs().amax(0), text.abs().amax(0), text.pow(2).sum(0), text.shape[0])
        old = stats.get(name)
        if old is not None:
            new = ChannelStats(
                torch.maximum(old.absmax, new.absmax),
                torch.maximum(old.absmax_text, new.absmax_text),
                old.sumsq_text + new.sumsq_text,
                old.count_text + new.count_text,
            )
        stats[name] = new

    _run_hooked(model, modules, chunks, hook, "calibrating")
    return stats


@torch.no_grad()
def input_hessians(
    model: Any, modules: dict[str, torch.nn.Module], chunks: list[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``X^T X`` (float64 ``[C, C]``) of each encoder's input over ``chunks``: what GPTQ
    weight rounding (:func:`stac.quant.quantise_weight_gptq`) weighs errors by."""
    out: dict[str, torch.Tensor] = {}

    def hook(name: str, x: torch.Tensor) -> None:
        x = x.detach().to(torch.float64)
        out[name] = out[name] + x.T @ x if name in out else x.T @ x

    _run_hooked(model, modules, chunks, hook, "weight statistics")
    return out


def cache_key(model: Any, chunks: list[torch.Tensor]) -> dict[str, Any] | None:
    """What calibration results depend on, for :mod:`stac.cache`: the model's weights, the
    calibration token ids and the clipping ratios searched; None when no cache is active."""
    from stac.cache import active, fingerprint_model, fingerprint_tensors

    if active() is None:
        return None
    return {
        "model": fingerprint_model(model),
        "text": fingerprint_tensors(chunks),
        "clip_ratios": list(CLIP_RATIOS),
    }


def stats_to_tensors(stats: dict[str, ChannelStats]) -> dict[str, torch.Tensor]:
    out = {}
    for name, s in stats.items():
        out[f"{name}.absmax"] = s.absmax
        out[f"{name}.absmax_text"] = s.absmax_text
        out[f"{name}.sumsq_text"] = s.sumsq_text
        out[f"{name}.count_text"] = torch.tensor([s.count_text], dtype=torch.int64)
    return out


def stats_from_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, ChannelStats]:
    names = sorted({k.rsplit(".", 1)[0] for k in tensors})
    return {
        n: ChannelStats(
            tensors[f"{n}.absmax"],
            tensors[f"{n}.absmax_text"],
            tensors[f"{n}.sumsq_text"],
            int(tensors[f"{n}.count_text"][0]),
        )
        for n in names
    }


def quantise_activation(x: torch.Tensor, step: torch.Tensor, levels: int) -> torch.Tensor:
    """The quantiser a SignedIF encoder realises over T steps: step * clip(floor(x/step + 1/2),
    -levels, levels). ``step`` is the spike value over T; ``levels`` is T times the payload K.

    This is the closed form of the onset-driven encoder
    (:func:`stac.sim.neurons.onset_quantiser`, with ``step = theta / T``) written for the
    threshold search; it equals the encoder's output only up to float rounding, so tests that
    compare with the encoder use :func:`encoder_quantiser` instead.
    """
    return step * torch.clamp(torch.floor(x / step + 0.5), -levels, levels)


#: The T-step mean output of an onset-driven SignedIF, with the encoder's own float operations
#: (the closed form of its scan, kept beside the scan in :mod:`stac.sim.neurons`).
encoder_quantiser = onset_quantiser


@torch.no_grad()
def optimise_steps(
    model: Any,
    modules: dict[str, torch.nn.Module],
    chunks: list[torch.Tensor],
    stats: dict[str, ChannelStats],
    levels: int,
    with_bos: bool = False,
) -> dict[str, torch.Tensor]:
    """Per channel, the quantisation step (from :data:`CLIP_RATIOS` of the maximum over
    ``levels``) with the least squared error on the calibration text.

    By default the BOS rows are left out (the payload is widened for them afterwards); with
    ``with_bos`` they are scored too and the ratios apply to the maximum over every token, for
    codings that cannot widen (binary spikes), so the attention sink is not clipped away.
    """
    ratios = torch.tensor(CLIP_RATIOS, dtype=torch.float64)
    errors = {
        name: torch.zeros(len(CLIP_RATIOS), s.absmax.numel(), dtype=torch.float64)
        for name, s in stats.items()
    }

    def peak(name: str) -> torch.Tensor:
        s = stats[name]
        return (s.absmax if with_bos else s.absmax_text).clamp_min(1e-12)

    def hook(name: str, x: torch.Tensor) -> None:
        text = x.detach()[0 if with_bos else 1 :].to(torch.float32)
        base = (peak(name) / levels).to(torch.float32)
        for i, r in enumerate(ratios.tolist()):
            q = quantise_activation(text, base * r, levels)
            errors[name][i] += (q - text).pow(2).sum(0, dtype=torch.float64)

    _run_hooked(model, modules, chunks, hook, "optimising thresholds")
    steps = {}
    for name, err in errors.items():
        best = ratios[err.argmin(0)]
        steps[name] = peak(name) * best / levels
    return steps
