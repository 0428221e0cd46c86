"""The V1 model, rebuilt: a converted backbone, an AdEx spiking layer and the causal memory.

::

    h      = the backbone's residual stream before its final norm    [B, N, D]  (frozen, spiking)
    I      = W_in layer_norm(h) + b_in                                 [B, N, n]  held for T steps
    s      = AdExLayer(I)                                              [T, B, N, n]  spikes
    r      = mean_t s                                                  firing rate per neuron
    m      = CausalHDMemory(r)                                         positions <= t only
    logits = backbone logits + W_out [r, m] + b_out                    W_out, b_out start at 0

or, given the backbone's LM head ``E`` ``[vocab, D]`` (``readout``), a correction in its
residual width read out through it, ``logits = backbone logits + E (W_out [r, m] + b_out)``
with ``W_out`` ``[D, 2n]``: the head then learns 2 n D numbers instead of 2 n vocab (on
SmolLM2, 73,728 against 6.3 M), and every word it moves, it moves through the backbone's own
embedding geometry.

so the untrained model is the backbone exactly, and whatever the head adds must come through
AdEx spikes. Training: next-token cross-entropy plus ``spike_l1`` times the mean spike rate
(the L1 norm of the spike trains per neuron-step), surrogate gradients through the AdEx spike
(:func:`stac.train.surrogate.superspike`). The backbone is an artifact run by
:class:`stac.train.graphnet.GraphNet`, frozen, so its features are computed once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stac.errors import StacError
from stac.train.adex import AdExLayer
from stac.train.graphnet import GraphNet
from stac.train.memory import CausalHDMemory


class V1Head(nn.Module):
    """AdEx layer + causal memory + a zero-initialised logit correction."""

    def __init__(
        self,
        hidden: int,
        vocab: int,
        neurons: int = 64,
        steps: int = 16,
        memory_dim: int = 1024,
        decay: float = 0.9,
        drive: float = 2.0,
        seed: int = 0,
        readout: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.steps = steps
        self.inp = nn.Linear(hidden, neurons)
        with torch.no_grad():  # unit-variance features -> currents around ``drive``: it fires
            self.inp.weight.mul_(math.sqrt(hidden) / math.sqrt(3))
            self.inp.bias.fill_(drive)
        self.adex = AdExLayer(neurons)
        self.memory = CausalHDMemory(neurons, memory_dim, decay=decay, seed=seed)
        if readout is not None and tuple(readout.shape) != (vocab, hidden):
            raise StacError(
                f"V1Head: readout must be [{vocab}, {hidden}], got {tuple(readout.shape)}"
            )
        self.readout = None if readout is None else readout.detach().float()
        self.out = nn.Linear(2 * neurons, vocab if readout is None else hidden)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logit correction ``[B, N, vocab]`` and the spikes ``[T, B, N, n]``."""
        x = F.layer_norm(h, h.shape[-1:])
        current = self.inp(x)
        spikes, _ = self.adex(current.unsqueeze(0).expand(self.steps, *current.shape))
        rate = spikes.mean(0)
        extra = self.out(torch.cat([rate, self.memory(rate)], -1))
        return (extra if self.readout is None else extra @ self.readout.T), spikes


@torch.no_grad()
def backbone_features(
    net: GraphNet, windows: torch.Tensor, steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen backbone's last residual stream and logits for every window."""
    last = net.residuals()[-1:]
    if not last:
        raise StacError("the backbone graph has no Residual node to read features from")
    hs, logits = [], []
    for w in windows:
        out, p = net(w[None], steps, record=last)
        hs.append(p.hidden[last[0]][0])
        logits.append(out[0])
    return torch.stack(hs), torch.stack(logits)


@dataclass
class V1Figures:
    steps: int
    spike_l1: float
    backbone_perplexity: float
    v1_perplexity: float
    spike_rate_before: float  # spikes per neuron-step on held-out text, untrained head
    spike_rate_after: float
    l1_term_first: float  # spike_l1 * rate at the first step (0 when spike_l1 = 0)
    seconds: float


def _nll(logits: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), windows[:, 1:].reshape(-1)
    )


def evaluate(
    head: V1Head, feats: tuple[torch.Tensor, torch.Tensor], windows: torch.Tensor
) -> tuple[float, float, float]:
    """(backbone perplexity, V1 perplexity, spike rate) on ``windows``."""
    h, base = feats
    with torch.no_grad():
        extra, spikes = head(h)
        return (
            math.exp(float(_nll(base, windows))),
            math.exp(float(_nll(base + extra, windows))),
            float(spikes.mean()),
        )


def train_v1(
    head: V1Head,
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    held_out: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    steps: int,
    spike_l1: float,
    lr: float = 3e-4,
    batch: int = 4,
    seed: int = 0,
) -> V1Figures:
    """Train ``head`` on ``train`` = (features, backbone logits, windows) and measure it on
    ``held_out`` before and after."""
    import time

    started = time.perf_counter()
    h, base, ids = train
    _, _, rate0 = evaluate(head, held_out[:2], held_out[2])
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    l1_first = math.nan
    for step in range(steps):
        pick = torch.randint(0, ids.shape[0], (batch,), generator=gen)
        extra, spikes = head(h[pick])
        l1 = spike_l1 * spikes.abs().mean()
        loss = _nll(base[pick] + extra, ids[pick]) + l1
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 0:
            l1_first = float(l1.detach())
    ppl_b, ppl_v, rate = evaluate(head, held_out[:2], held_out[2])
    return V1Figures(
        steps, spike_l1, ppl_b, ppl_v, rate0, rate, l1_first, time.perf_counter() - started
    )


def load_backbone(artifact: Any) -> tuple[GraphNet, int, int]:
    """A frozen GraphNet of the artifact, its residual width and vocabulary size."""
    net = GraphNet(artifact.graph, learn=())
    vocab = int(artifact.graph.metadata["vocab_size"])
    last = net.residuals()[-1]
    width = int(artifact.graph.nodes[last].size)
    return net, width, vocab


def lm_head_weight(artifact: Any) -> torch.Tensor:
    """The backbone's LM head ``[vocab, width]`` as the artifact holds it, for
    :class:`V1Head`'s ``readout``: the linear map nearest the graph's output (through any
    readout or relabelling between them)."""
    graph = artifact.graph
    feeds = {dst: src for src, dst in graph.edges}
    name = next((k for k, v in graph.nodes.items() if isinstance(v, nir.Output)), None)
    while name in feeds:
        name = feeds[name]
        node = graph.nodes[name]
        if isinstance(node, nir.Linear | nir.Affine):
            return torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
    raise StacError("the backbone has no linear map before its output to read out through")


__all__ = [
    "V1Figures",
    "V1Head",
    "backbone_features",
    "evaluate",
    "lm_head_weight",
    "load_backbone",
    "train_v1",
]
