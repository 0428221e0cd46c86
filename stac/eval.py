"""Fidelity of a converted graph against its own float execution on real text.

The float reference is the same IR run with neurons passing their drive through, which the
test suite checks equals the Hugging Face model's logits; so the comparison isolates what
spiking costs. Both run on the reference simulator through the pipeline's ``run`` step
(:mod:`stac.pipeline`); nothing is fitted or priced.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import nir
import torch
import torch.nn.functional as F
from tqdm import tqdm

from stac.errors import StacError
from stac.frontend.text import with_bos
from stac.ir.nodes import SignedIF
from stac.pipeline import REFERENCE, run, simulate
from stac.profiles import Profile
from stac.sim.onchip_fixed import fixed_host_ops
from stac.sim.semantics import NodeStats, RunContext


@dataclass(frozen=True)
class Fidelity:
    timesteps: int
    tokens: int  # predicted tokens scored
    float_perplexity: float
    snn_perplexity: float
    perplexity_ratio: float
    top1_agreement: float  # share of positions where both models' argmax agree
    mean_kl: float  # KL(float || snn) per position, nats
    spike_rate: float  # nonzero spikes per neuron-step, over every spiking encoder
    bits_per_spike: float  # mean bits carried per emitted spike
    layer_spike_rates: dict[str, float]  # per spiking encoder

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def windows(tokenizer: Any, token_ids: torch.Tensor, window: int, count: int) -> list[torch.Tensor]:
    """``count`` non-overlapping windows from a 1-D id tensor, each BOS + ``window - 1`` ids."""
    needed = (window - 1) * count
    if token_ids.numel() < needed:
        raise StacError(
            f"the evaluation text has {token_ids.numel()} tokens, {needed} are needed "
            f"({count} windows of {window})"
        )
    return [with_bos(tokenizer, c) for c in token_ids[:needed].reshape(count, window - 1)]


@torch.no_grad()
def float_logits(model: Any, chunks: list[torch.Tensor]) -> list[torch.Tensor]:
    """The float Hugging Face model's logits ``[N, vocab]`` for each chunk: the reference."""
    return [model(c[None]).logits[0].float() for c in tqdm(chunks, desc="float", leave=False)]


def window_scores(
    chunk: torch.Tensor, ref: torch.Tensor, out: torch.Tensor
) -> tuple[float, float, float, float]:
    """One window's sums against the float logits ``ref`` (``[N, vocab]``, as ``out``): the
    float and SNN negative log-likelihoods and the KL over the N - 1 predicted tokens, and the
    positions (all N) where both argmaxes agree."""
    lf, ls = F.log_softmax(ref[:-1], -1), F.log_softmax(out[:-1], -1)
    target = chunk[1:, None]
    return (
        float(-lf.gather(1, target).sum()),
        float(-ls.gather(1, target).sum()),
        float((lf.exp() * (lf - ls)).sum()),
        float((ref.argmax(-1) == out.argmax(-1)).sum()),
    )


@torch.no_grad()
def evaluate(
    graph: nir.NIRGraph,
    chunks: list[torch.Tensor],
    timesteps: list[int],
    reference: list[torch.Tensor] | None = None,
    on_chip: Profile | None = None,
    calibration: list[torch.Tensor] | None = None,
    host_ops: dict[int, Any] | None = None,
    first_position: str = "host",
    spiking: bool | frozenset[str] = True,
) -> list[Fidelity]:
    """Perplexity, agreement and KL of the SNN at each T against the float model.

    ``reference`` holds the float model's logits per chunk (:func:`float_logits`). Without it
    the graph's own float path is used (neurons pass their drive through), which equals the
    Hugging Face model only for a graph with float weights (simplified mode).

    ``on_chip``: a profile whose ``[capabilities]`` move host ops onto the chip; those nodes
    then compute in Lava's fixed point (:mod:`stac.sim.onchip_fixed`), with scales calibrated
    at each T on the ``calibration`` windows and written to ``host_ops[T]`` when given;
    ``first_position``: where position 0's RMSNorms run (``host`` or ``chip``).
    ``spiking``: False runs every encoder as a pass-through (the graph's quantised weights
    with float activations: what the weights alone cost); a set of encoder names spikes only
    those (what they cost on top of the weights; readouts still round). The perplexities are
    then of that network.
    """
    sim = simulate(graph)  # lowered once, run at every T
    encoders = [k for k, v in graph.nodes.items() if isinstance(v, SignedIF)]
    if isinstance(spiking, frozenset) and not spiking <= set(encoders):
        unknown = sorted(spiking - set(encoders))
        raise StacError(f"not spiking encoders of this graph: {unknown[:5]}")
    if reference is None:
        quantised = [k for k, v in graph.nodes.items() if "quant" in getattr(v, "metadata", {})]
        if quantised:
            raise StacError(
                "this graph's weights are quantised: pass the float model's logits as the reference"
            )
        reference = [
            run(REFERENCE, sim, RunContext(c[None], steps=1, spiking=False))[0]["output"][0]
            for c in chunks
        ]
    refs = reference
    results = []
    for steps in timesteps:
        if on_chip is not None:
            fixed = fixed_host_ops(sim, on_chip, calibration or [], steps, first_position)
            sim.overrides = fixed.overrides(graph)
            if host_ops is not None:
                host_ops[steps] = fixed.doc()
        nll_f = nll_s = kl = agree = n = 0.0
        totals: dict[str, NodeStats] = {}
        pairs = list(zip(chunks, refs, strict=True))
        for chunk, ref in tqdm(pairs, desc=f"T={steps}", leave=False):
            ctx = RunContext(chunk[None], steps=steps, spiking=spiking is not False)
            ctx.spiking_nodes = spiking if isinstance(spiking, frozenset) else None
            outputs, stats = run(REFERENCE, sim, ctx)
            out = outputs["output"][0]
            for name in encoders:
                totals.setdefault(name, NodeStats())
                totals[name] += stats[name]
            f, s, k, a = window_scores(chunk, ref, out)
            nll_f, nll_s, kl, agree = nll_f + f, nll_s + s, kl + k, agree + a
            n += chunk.numel() - 1
        ppl_f, ppl_s = float(torch.tensor(nll_f / n).exp()), float(torch.tensor(nll_s / n).exp())
        total = sum(c.numel() for c in chunks)
        spikes = sum(t.spikes for t in totals.values())
        updates = sum(t.neuron_updates for t in totals.values())
        results.append(
            Fidelity(
                steps,
                int(n),
                ppl_f,
                ppl_s,
                ppl_s / ppl_f,
                agree / total,
                kl / n,
                spike_rate=spikes / updates if updates else 0.0,
                bits_per_spike=sum(t.spike_bits for t in totals.values()) / spikes
                if spikes
                else 0.0,
                layer_spike_rates={
                    k: t.spikes / t.neuron_updates if t.neuron_updates else 0.0
                    for k, t in totals.items()
                },
            )
        )
    return results
