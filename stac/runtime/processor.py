"""The TemporalSpikeProcessor: the host-side state of a deployed spiking chat model.

A chip holds weights and neuron state, not a growing conversation. This processor keeps, per
conversation, the token history, the KV cache of every attention node, the next position and
the attention mask, and drives the simulator (through :class:`stac.sim.simulator.Simulator`
and :class:`stac.sim.semantics.RunContext` only) token by token, T timesteps per token.

State per conversation
    ``tokens`` (the history the model sees), ``cache`` (per attention node ``(k, v)`` of shape
    ``[1, kv_heads, cached, head_dim]``, keys already rotated) covering ``tokens[:cached]``.
    Positions are ``0 .. len(tokens) - 1``: a call continues from the conversation's length.

Batches
    A call may carry several conversations of different lengths; :mod:`stac.runtime.kv` packs
    them into one padded run (masks, positions, left-padded caches) and takes each row's cache
    back.

Neuron state between tokens
    Every token's neurons start from reset: the simulator scans T steps per token from v = 0,
    so nothing but the KV cache carries over from one token to the next. That is the policy
    the simplified conversion needs (each token's encoders are rate-coded quantisers of that
    token's drive), and it is why a cached step and a full recompute see the same neurons.

Bounded context (eviction)
    At most ``max_context_length`` tokens per conversation. A call that would exceed it first
    drops the oldest tokens after the pinned prefix (the system prompt): at least the overflow
    and at least ``evict_fraction`` of the slidable window, so evictions are rare. The kept
    tokens are then **re-encoded** from position 0 (the cache is rebuilt), rather than keeping
    keys rotated at their old positions: positions then never reach the limit (GPT-2's learned
    position table ends there; RoPE keys would keep the gap of the dropped tokens and drift
    past the trained range), and the state after an eviction is exactly a fresh conversation
    on the kept window. The price is one prefill of the kept window per eviction.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Iterator, Sequence

import nir
import torch

from stac.errors import StacError
from stac.limits import MAX_T, MIN_T
from stac.runtime.kv import KV, Row, as_batch, pack, unpack
from stac.runtime.outputs import SpikeCausalLMOutput
from stac.sim.semantics import NodeStats
from stac.sim.simulator import Simulator

log = logging.getLogger(__name__)

ConversationId = Hashable


@dataclass
class Conversation:
    """One conversation's host-side state (see the module docstring)."""

    id: ConversationId
    pinned: int = 0  # leading tokens never evicted (the system prompt)
    tokens: list[int] = field(default_factory=list)
    cache: KV = field(default_factory=dict)
    cached: int = 0  # the cache covers tokens[:cached]
    evicted: int = 0  # tokens dropped so far

    @property
    def cache_bytes(self) -> int:
        return sum(
            k.numel() * k.element_size() + v.numel() * v.element_size()
            for k, v in self.cache.values()
        )


@dataclass
class Meter:
    """Work summed over the runs made while it is active (see ``processor.metering()``)."""

    stats: dict[str, NodeStats] = field(default_factory=dict)
    tokens: int = 0  # real tokens computed (re-encoded ones included)
    padded: int = 0  # padding slots computed alongside them
    runs: int = 0

    def add(self, stats: dict[str, NodeStats], tokens: int, padded: int) -> None:
        for name, s in stats.items():
            self.stats.setdefault(name, NodeStats()).__iadd__(s)
        self.tokens += tokens
        self.padded += padded
        self.runs += 1


@dataclass(frozen=True)
class RunRecord:
    """What the last call fed the simulator, for inspection and ``stac verify``."""

    conversation_ids: tuple[ConversationId, ...]
    token_ids: torch.Tensor  # [B, N] as run (left-padded)
    positions: torch.Tensor  # [B, N]
    attention_mask: torch.Tensor  # [B, past + N], False on padding
    past: tuple[int, ...]  # cached tokens each row attended to
    computed: tuple[int, ...]  # real tokens computed per row (new + re-encoded)
    evicted: tuple[int, ...]  # tokens this call dropped per row
    stats: dict[str, NodeStats]


@dataclass
class _Plan:
    """One row of a call, decided before any state changes (so a failure changes nothing)."""

    conv: Conversation
    new: list[int]
    tokens: list[int]  # history after eviction and the new tokens
    past: int  # cached tokens reused
    evicted: int


class TemporalSpikeProcessor:
    """Drive a converted spiking LM over multi-turn conversations with a host KV cache.

    ``snn_model`` is an artifact directory, a loaded :class:`stac.artifact.Artifact` or an IR
    graph. ``T`` defaults to the conversion's timesteps. ``spiking=False`` runs the same graph
    with neurons passing their drive through (the float reference). ``dtype`` is the precision
    of the arithmetic: float32 (deployment), or float64, in which no quantiser decision
    depends on the order of float sums (``stac verify``'s spiking checks).
    """

    def __init__(
        self,
        snn_model: Any,
        T: int | None = None,
        max_context_length: int = 512,
        evict_fraction: float = 0.25,
        spiking: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if isinstance(snn_model, (str, Path)):
            from stac.artifact import load_artifact

            snn_model = load_artifact(snn_model)
        self.graph = _graph_of(snn_model)
        # The artifact's own copies of its profiles price the runs (None for a bare graph).
        self.profile = getattr(snn_model, "profile", None)
        self.host_profile = getattr(snn_model, "host", None)
        meta = self.graph.metadata
        self.T = int(T if T is not None else meta.get("conversion", {}).get("timesteps", 16))
        if not MIN_T <= self.T <= MAX_T:
            raise StacError(f"T={self.T} is outside the supported range {MIN_T}..{MAX_T}")
        limit = int(meta.get("max_positions", 0))
        if not 1 <= max_context_length <= (limit or max_context_length):
            raise StacError(
                f"max_context_length={max_context_length} must be in 1..{limit} (the model's "
                f"position limit)"
            )
        if not 0.0 <= evict_fraction <= 1.0:
            raise StacError(f"evict_fraction={evict_fraction} must be in 0..1")
        if "vocab_size" not in meta:
            raise StacError("the graph's metadata has no vocab_size; is it a stac LM graph?")
        outputs = [n for n, node in self.graph.nodes.items() if isinstance(node, nir.Output)]
        if len(outputs) != 1:
            raise StacError(f"a language model graph has one Output node, this one {outputs}")
        self.output = outputs[0]
        self.vocab_size = int(meta["vocab_size"])
        self.max_context_length = int(max_context_length)
        self.evict_fraction = float(evict_fraction)
        self.spiking = spiking
        if dtype not in (torch.float32, torch.float64):
            raise StacError(f"dtype={dtype} must be torch.float32 or torch.float64")
        self.dtype = dtype
        self.simulator = Simulator(self.graph, dtype=dtype)
        self.last_run: RunRecord | None = None
        self._conversations: dict[ConversationId, Conversation] = {}
        self._meters: list[Meter] = []
        self._ids = itertools.count()

    # ----- conversations -------------------------------------------------------------------

    @property
    def conversations(self) -> list[ConversationId]:
        return list(self._conversations)

    def open(
        self, conversation_id: ConversationId | None = None, pinned: int = 0
    ) -> ConversationId:
        """Start a conversation (a fresh integer id when none is given) and return its id.

        ``pinned``: how many leading tokens of the conversation (its system prompt) eviction
        keeps.
        """
        if conversation_id is None:
            conversation_id = next(i for i in self._ids if i not in self._conversations)
        if conversation_id in self._conversations:
            raise StacError(f"conversation {conversation_id!r} is already open")
        if not 0 <= pinned < self.max_context_length:
            raise StacError(
                f"pinned={pinned} must leave room in the context of {self.max_context_length}"
            )
        self._conversations[conversation_id] = Conversation(conversation_id, pinned)
        return conversation_id

    def get(self, conversation_id: ConversationId) -> Conversation:
        try:
            return self._conversations[conversation_id]
        except (KeyError, TypeError):
            known = ", ".join(repr(c) for c in self._conversations) or "none"
            raise StacError(
                f"unknown conversation id {conversation_id!r} (open conversations: {known})"
            ) from None

    def history(self, conversation_id: ConversationId) -> list[int]:
        return list(self.get(conversation_id).tokens)

    def reset(self, conversation_id: ConversationId) -> None:
        """Forget one conversation's history and cache; keep it open (and its pin)."""
        conv = self.get(conversation_id)
        self._conversations[conversation_id] = Conversation(conv.id, conv.pinned)

    def remove(self, conversation_id: ConversationId) -> None:
        self.get(conversation_id)
        del self._conversations[conversation_id]

    def set_pinned(self, conversation_id: ConversationId, pinned: int) -> None:
        conv = self.get(conversation_id)
        if not 0 <= pinned < self.max_context_length:
            raise StacError(f"pinned={pinned} must be below the context {self.max_context_length}")
        conv.pinned = pinned

    def cache_bytes(self, conversation_id: ConversationId | None = None) -> int:
        convs = (
            self._conversations.values() if conversation_id is None else [self.get(conversation_id)]
        )
        return sum(c.cache_bytes for c in convs)

    @contextlib.contextmanager
    def metering(self) -> Iterator[Meter]:
        """Sum the statistics of every run made inside the block."""
        meter = Meter()
        self._meters.append(meter)
        try:
            yield meter
        finally:
            self._meters.remove(meter)

    # ----- running -------------------------------------------------------------------------

    def __call__(
        self,
        input_ids: Any,
        use_cache: bool = True,
        conversation_ids: Sequence[ConversationId] | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> SpikeCausalLMOutput:
        """Feed new tokens to conversations; return their logits ``[B, N, vocab]`` (``.logits``)
        and each row's KV cache after the call (``.past_key_values``).

        ``input_ids``: ``[B, N]`` or ``[N]`` ids, or a list of id lists of different lengths
        (right-padded here). ``attention_mask`` (``[B, N]``, False = padding) marks the real
        tokens of a padded tensor. Row b continues ``conversation_ids[b]``; without ids the
        rows are conversations ``0 .. B-1``, opened on first use. ``use_cache=False`` keeps no
        KV cache and recomputes each conversation's whole history (the reference path).
        Logits at padding slots are 0.
        """
        ids, mask = as_batch(input_ids, attention_mask)
        opened = []
        if conversation_ids is None:
            conversation_ids = list(range(ids.shape[0]))
            opened = [self.open(c) for c in conversation_ids if c not in self._conversations]
        try:
            plans = self._plan(ids, mask, list(conversation_ids), use_cache)
            logits = self._run(plans, use_cache)
        except BaseException:
            for cid in opened:  # a failed call leaves no trace
                del self._conversations[cid]
            raise
        out = logits.new_zeros(*ids.shape, logits.shape[-1])
        for b, plan in enumerate(plans):
            out[b, mask[b]] = logits[b, logits.shape[1] - len(plan.new) :]
        return SpikeCausalLMOutput(
            logits=out,
            past_key_values=tuple(plan.conv.cache for plan in plans),
            conversation_ids=tuple(plan.conv.id for plan in plans),
        )

    def _plan(
        self, ids: torch.Tensor, mask: torch.Tensor, cids: list[ConversationId], use_cache: bool
    ) -> list[_Plan]:
        if len(cids) != ids.shape[0]:
            raise StacError(f"{len(cids)} conversation ids for {ids.shape[0]} input rows")
        if len(set(cids)) != len(cids):
            raise StacError(f"a conversation appears twice in one call: {cids}")
        plans = []
        for b, cid in enumerate(cids):
            conv = self.get(cid)
            new = ids[b][mask[b]].tolist()
            if not new:
                raise StacError(f"empty turn for conversation {cid!r}: no input tokens")
            bad = [t for t in new if not 0 <= t < self.vocab_size]
            if bad:
                raise StacError(
                    f"token id {bad[0]} for conversation {cid!r} is outside the vocabulary "
                    f"0..{self.vocab_size - 1}"
                )
            fixed = min(conv.pinned, len(conv.tokens))  # what eviction cannot free
            if fixed + len(new) > self.max_context_length:
                raise StacError(
                    f"the input of {len(new)} tokens for conversation {cid!r} does not fit the "
                    f"context of {self.max_context_length} tokens ({fixed} pinned)"
                )
            tokens, dropped = self._evict(conv, len(new))
            past = conv.cached if use_cache and not dropped else 0
            plans.append(_Plan(conv, new, tokens + new, past, dropped))
        return plans

    def _evict(self, conv: Conversation, incoming: int) -> tuple[list[int], int]:
        """The history after making room for ``incoming`` tokens, and how many were dropped."""
        overflow = len(conv.tokens) + incoming - self.max_context_length
        if overflow <= 0:
            return conv.tokens, 0
        slidable = len(conv.tokens) - conv.pinned
        window = self.max_context_length - conv.pinned
        drop = min(slidable, max(overflow, math.ceil(self.evict_fraction * window)))
        log.info(
            "conversation %r: evicting %d tokens after the %d pinned; re-encoding %d",
            conv.id,
            drop,
            conv.pinned,
            len(conv.tokens) - drop,
        )
        return conv.tokens[: conv.pinned] + conv.tokens[conv.pinned + drop :], drop

    def _run(self, plans: list[_Plan], use_cache: bool) -> torch.Tensor:
        rows = [Row(p.tokens, p.past, p.conv.cache) for p in plans]
        ctx = pack(rows, self.T, use_cache, self.spiking)
        outputs, stats = self.simulator.run(ctx)
        computed = tuple(len(p.tokens) - p.past for p in plans)
        padded = ctx.token_ids.numel() - sum(computed)
        for meter in self._meters:
            meter.add(stats, sum(computed), padded)
        # The packing gives the mask and the simulator the positions; neither is None here.
        assert ctx.positions is not None and ctx.attention_mask is not None
        self.last_run = RunRecord(
            tuple(p.conv.id for p in plans),
            ctx.token_ids,
            ctx.positions,
            ctx.attention_mask,
            tuple(p.past for p in plans),
            computed,
            tuple(p.evicted for p in plans),
            stats,
        )
        for b, plan in enumerate(plans):  # commit only after the run succeeded
            conv = plan.conv
            conv.tokens, conv.evicted = plan.tokens, conv.evicted + plan.evicted
            conv.cache = unpack(ctx, b, rows[b]) if use_cache else {}
            conv.cached = len(plan.tokens) if use_cache else 0
        return outputs[self.output]


def _graph_of(snn_model: Any) -> nir.NIRGraph:
    if isinstance(snn_model, nir.NIRGraph):
        return snn_model
    if isinstance(snn_model, (str, Path)):
        from stac.artifact import load_artifact

        return load_artifact(snn_model).graph
    graph = getattr(snn_model, "graph", None)
    if isinstance(graph, nir.NIRGraph):
        return graph
    raise StacError(
        f"TemporalSpikeProcessor needs an artifact directory, an Artifact or an IR graph, "
        f"not {type(snn_model).__name__}"
    )
