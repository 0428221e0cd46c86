"""Reference semantics of every IR node type, vectorised over timesteps and tokens.

Each entry of :data:`SEMANTICS` maps a node type to ``f(node, inp, ctx, name, need_steps) ->
(Signal, NodeStats)``. ``inp`` is the sum of the node's incoming signals (NIR semantics).
Spiking neurons are stateful scans over T steps (:mod:`stac.sim.neurons`). Host ops are
evaluated once per token on their accumulated input (the mean over T), a layer barrier.
Linear maps produce per-step outputs only when a consumer needs them; otherwise they map the
accumulated input, which by linearity equals the mean of the per-step outputs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import nir
import numpy as np
import torch
import torch.nn.functional as F

from stac.errors import StacError
from stac.ir.nodes import (
    Activation,
    CausalSelfAttention,
    Embedding,
    GatedActivation,
    LayerNorm,
    Readout,
    Residual,
    RMSNorm,
    Rotation,
    SignedIF,
)
from stac.ir.nodes.rotation import hadamard
from stac.sim.neurons import signed_if_scan, token_gain
from stac.sim.nir_neurons import affine_map
from stac.sim.signal import Signal


@dataclass
class NodeStats:
    """Work done by one node for one run, summed over every token in the batch."""

    spikes: int = 0  # nonzero spikes emitted
    spike_bits: int = 0  # bits those spikes carry (1 per binary spike, more when graded)
    neuron_updates: int = 0  # neuron-timesteps simulated
    synops: int = 0  # synaptic accumulates triggered by spikes (spike x fan-out)
    dense_macs: int = 0  # multiply-accumulates of a linear map fed by a non-spike value
    host_macs: int = 0  # multiply-accumulates done off chip (attention products)
    host_flops: int = 0  # other arithmetic done off chip (norms, activations, softmax)

    def __iadd__(self, other: "NodeStats") -> "NodeStats":
        for key in vars(self):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        return self


@dataclass
class RunContext:
    """Everything a run needs besides the graph: tokens, positions, masks, KV cache, T."""

    token_ids: torch.Tensor  # [B, N] int64
    steps: int  # T, timesteps per token
    positions: torch.Tensor | None = None  # [B, N]; default 0..N-1 after the cached past
    attention_mask: torch.Tensor | None = None  # [B, past + N] bool, False = padding
    kv_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    use_cache: bool = False  # store this run's keys and values in kv_cache
    spiking: bool = True  # False: neurons pass their drive through (the float ANN)
    # with spiking, the encoders that spike (None: all); the others pass their drive through,
    # so a run can charge the error to one group of encoders at a time
    spiking_nodes: frozenset[str] | None = None
    params: Callable[[Any], torch.Tensor] = torch.as_tensor  # numpy array -> tensor (cached)

    @property
    def tokens(self) -> int:
        return int(self.token_ids.numel())


Semantics = Callable[[Any, Signal, RunContext, str, bool], tuple[Signal, NodeStats]]


def _input(node: nir.Input, inp: Signal, ctx: RunContext, name: str, need: bool):
    return Signal(ctx.token_ids.to(torch.float32).unsqueeze(-1), False), NodeStats()


def _output(node: nir.Output, inp: Signal, ctx: RunContext, name: str, need: bool):
    return Signal(inp.mean(), False), NodeStats()


def _affine(node: nir.Affine | nir.Linear, inp: Signal, ctx: RunContext, name: str, need: bool):
    out_features, in_features = ctx.params(node.weight).shape
    stats = NodeStats()
    if inp.events:  # spikes fan out to every output compartment, which integrates each step
        stats.synops = int(torch.count_nonzero(inp.value)) * out_features
        stats.neuron_updates = ctx.steps * ctx.tokens * out_features
    else:
        stats.dense_macs = ctx.tokens * in_features * out_features
    x = inp.value if (need and inp.per_step) else inp.mean()
    return Signal(affine_map(node, x, ctx.params), need and inp.per_step), stats


def _signed_if(node: SignedIF, inp: Signal, ctx: RunContext, name: str, need: bool):
    if not ctx.spiking or (ctx.spiking_nodes is not None and name not in ctx.spiking_nodes):
        return inp, NodeStats()
    threshold = ctx.params(node.threshold)
    dead_zone = None if node.dead_zone is None else ctx.params(node.dead_zone)
    stats = NodeStats(neuron_updates=ctx.steps * ctx.tokens * threshold.numel())
    if node.token_gain:
        gain = token_gain(inp.mean(), threshold, node.gain_ratio, node.gain_floor)
        threshold = threshold * gain
        stats.host_flops = 3 * ctx.tokens * node.threshold.size  # ratio, max, rescale
        if dead_zone is not None:  # the band scales with the threshold it is measured in
            dead_zone = dead_zone * gain
    spikes = signed_if_scan(
        inp.value,
        threshold,
        ctx.steps,
        inp.per_step,
        int(node.max_payload),
        node.onset_drive,
        dead_zone,
    )
    stats.spikes = int(torch.count_nonzero(spikes))
    stats.spike_bits = stats.spikes * node.bits_per_spike()
    return Signal(spikes * threshold, True, events=True), stats


def readout_levels(x: torch.Tensor, step: torch.Tensor, steps: int, max_level: int) -> torch.Tensor:
    """:class:`~stac.ir.nodes.Readout`'s integer levels for token means ``x``:
    ``clip(floor(T x / step + 1/2), -L, L)``."""
    return torch.floor(steps * x / step + 0.5).clamp(-max_level, max_level)


def _readout(node: Readout, inp: Signal, ctx: RunContext, name: str, need: bool):
    if not ctx.spiking:
        return Signal(inp.mean(), False), NodeStats()
    step = ctx.params(node.step)
    level = readout_levels(inp.mean(), step, ctx.steps, node.max_level)
    return Signal(level * step / ctx.steps, False), NodeStats()  # priced by the host link


def _rms_norm(node: RMSNorm, inp: Signal, ctx: RunContext, name: str, need: bool):
    x = inp.mean()
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + node.eps) * ctx.params(node.weight)
    return Signal(y, False), NodeStats(host_flops=4 * x.numel())


def _layer_norm(node: LayerNorm, inp: Signal, ctx: RunContext, name: str, need: bool):
    x = inp.mean()
    y = F.layer_norm(x, x.shape[-1:], ctx.params(node.weight), ctx.params(node.bias), node.eps)
    return Signal(y, False), NodeStats(host_flops=7 * x.numel())


_ACT: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "silu": F.silu,
    "relu": F.relu,
}


def _activation(node: Activation, inp: Signal, ctx: RunContext, name: str, need: bool):
    x = inp.mean()
    return Signal(_ACT[node.kind](x), False), NodeStats(host_flops=8 * x.numel())


def _gated(node: GatedActivation, inp: Signal, ctx: RunContext, name: str, need: bool):
    gate, up = inp.mean().split(node.size, dim=-1)
    return Signal(_ACT[node.kind](gate) * up, False), NodeStats(host_flops=9 * up.numel())


def _residual(node: Residual, inp: Signal, ctx: RunContext, name: str, need: bool):
    out = inp if need else Signal(inp.mean(), False)
    return out, NodeStats(host_flops=ctx.tokens * node.size)


def _rotate(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE on [B, H, N, d] at positions [B, N] (rotate-half convention, as in HF Llama)."""
    d = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    angles = positions.to(torch.float32)[..., None] * inv_freq  # [B, N, d/2]
    emb = torch.cat([angles, angles], dim=-1)[:, None]  # [B, 1, N, d]
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * emb.cos() + torch.cat([-x2, x1], dim=-1) * emb.sin()


def _attention(node: CausalSelfAttention, inp: Signal, ctx: RunContext, name: str, need: bool):
    qkv = inp.mean()
    b, n, _ = qkv.shape
    h, hkv, d = node.num_heads, node.num_kv_heads, node.head_dim
    q, k, v = qkv.split([node.q_size, node.kv_size, node.kv_size], dim=-1)
    q = q.reshape(b, n, h, d).transpose(1, 2)
    k = k.reshape(b, n, hkv, d).transpose(1, 2)
    v = v.reshape(b, n, hkv, d).transpose(1, 2)
    if node.rope_theta:
        if ctx.positions is None:
            raise StacError(f"{name}: RoPE needs the tokens' positions (Simulator.run sets them)")
        q = _rotate(q, ctx.positions, node.rope_theta)
        k = _rotate(k, ctx.positions, node.rope_theta)
    if name in ctx.kv_cache:
        past_k, past_v = ctx.kv_cache[name]
        k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
    if ctx.use_cache:
        ctx.kv_cache[name] = (k, v)
    total = k.shape[2]
    past = total - n
    k = k.repeat_interleave(h // hkv, dim=1)
    v = v.repeat_interleave(h // hkv, dim=1)
    scores = (q @ k.transpose(-1, -2)) * node.scale  # [B, H, N, total]
    allowed = torch.ones(n, total, dtype=torch.bool).tril(diagonal=past)[None, None]
    if ctx.attention_mask is not None:
        allowed = allowed & ctx.attention_mask[:, None, None, :total].bool()
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    out = scores.softmax(-1) @ v  # [B, H, N, d]
    out = out.transpose(1, 2).reshape(b, n, h * d)
    ctx_len = total
    stats = NodeStats(
        host_macs=2 * b * n * h * d * ctx_len,
        host_flops=b * n * h * (5 * ctx_len + (6 * d if node.rope_theta else 0)),
    )
    return Signal(out, False), stats


@functools.lru_cache(maxsize=8)
def _hadamard(size: int) -> torch.Tensor:
    return torch.from_numpy(hadamard(size).astype(np.float32))


def rotate(node: Rotation, x: torch.Tensor, params: Callable[[Any], torch.Tensor]) -> torch.Tensor:
    """``x R`` for :class:`~stac.ir.nodes.Rotation` ``node``: signs, a Hadamard transform of
    each row of ``b`` values, then ``mix^T`` across the ``m`` rows (differentiable in x)."""
    m, b = int(node.mix.shape[0]), node.block
    signs, mix = params(node.signs).to(x.dtype), params(node.mix).to(x.dtype)
    h = _hadamard(b).to(device=x.device, dtype=x.dtype)
    rows = (x * signs).reshape(*x.shape[:-1], m, b) @ h
    return (mix.T @ rows).reshape(x.shape)


def _rotation(node: Rotation, inp: Signal, ctx: RunContext, name: str, need: bool):
    x = inp.mean()
    macs, other = node.host_ops_per_value()
    values = ctx.tokens * node.size
    return Signal(rotate(node, x, ctx.params), False), NodeStats(
        host_macs=macs * values, host_flops=other * values
    )


def _embedding(node: Embedding, inp: Signal, ctx: RunContext, name: str, need: bool):
    index = ctx.token_ids if node.index == "token" else ctx.positions
    table = ctx.params(node.weight)
    return Signal(table[index], False), NodeStats(host_flops=ctx.tokens * table.shape[1])


SEMANTICS: dict[type, Semantics] = {
    nir.Input: _input,
    nir.Output: _output,
    nir.Affine: _affine,
    nir.Linear: _affine,
    SignedIF: _signed_if,
    Readout: _readout,
    RMSNorm: _rms_norm,
    LayerNorm: _layer_norm,
    Activation: _activation,
    GatedActivation: _gated,
    Residual: _residual,
    CausalSelfAttention: _attention,
    Embedding: _embedding,
    Rotation: _rotation,
}

#: Node types whose dynamics need a value per timestep at their input.
STEPPED_INPUT: tuple[type, ...] = (SignedIF,)
#: Linear node types: they pass per-step structure through when a consumer needs it.
LINEAR_TYPES: tuple[type, ...] = (nir.Affine, nir.Linear, Residual)

__all__ = ["LINEAR_TYPES", "NodeStats", "RunContext", "SEMANTICS", "STEPPED_INPUT"]
