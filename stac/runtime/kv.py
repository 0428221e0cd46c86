"""Packing several conversations into one simulator run, and taking each one's KV cache back.

The conversation store (:mod:`stac.runtime.processor`) decides, per row, which tokens the model
sees and how many of them its cache already covers; this module turns those rows into one
:class:`stac.sim.semantics.RunContext` and splits the run's cache back into rows.

Batches
    Rows may be conversations of different lengths. Past caches are left-padded to the longest
    past, new tokens are left-padded to the longest input, and the attention mask
    ``[B, past + N]`` is False on every padding slot; the simulator's causal mask is offset by
    the (common) past, so each real token sees exactly its own conversation's history.
    Padding tokens are computed (and counted in the run's statistics) but never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from stac.errors import StacError
from stac.sim.semantics import RunContext

KV = dict[str, tuple[torch.Tensor, torch.Tensor]]
PAD_ID = 0  # token fed at padding slots; any valid id works, its results are discarded


@dataclass(frozen=True)
class Row:
    """One conversation's share of a run."""

    tokens: Sequence[int]  # the history the model sees, the new tokens last
    past: int  # leading tokens whose keys and values come from ``cache`` (not recomputed)
    cache: KV  # per attention node (k, v), [1, kv_heads, >= past, head_dim], keys rotated


def as_batch(input_ids: Any, attention_mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, N]`` int64 ids and a bool mask of the real tokens.

    ``input_ids``: ``[B, N]`` or ``[N]`` ids (with an optional ``attention_mask``, False =
    padding), or a list of id lists of different lengths, right-padded here with ``PAD_ID``.
    """
    if (
        isinstance(input_ids, (list, tuple))
        and input_ids
        and all(isinstance(r, (list, tuple, torch.Tensor)) for r in input_ids)
    ):
        rows = [torch.as_tensor(r, dtype=torch.long).reshape(-1) for r in input_ids]
        width = max(r.numel() for r in rows)
        ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
        made = torch.zeros(len(rows), width, dtype=torch.bool)
        for b, r in enumerate(rows):
            ids[b, : r.numel()], made[b, : r.numel()] = r, True
        if attention_mask is not None:
            raise StacError("pass an attention_mask only with a padded tensor of ids")
        return ids, made
    ids = torch.as_tensor(input_ids)
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise StacError(f"input ids must be integers, got {ids.dtype}")
    ids = ids.to(torch.long)
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2 or ids.shape[0] == 0:
        raise StacError(f"input ids must be [batch, tokens], got shape {tuple(ids.shape)}")
    if attention_mask is None:
        return ids, torch.ones_like(ids, dtype=torch.bool)
    mask = torch.as_tensor(attention_mask).to(torch.bool)
    if mask.dim() == 1:
        mask = mask[None]
    if mask.shape != ids.shape:
        raise StacError(f"attention_mask {tuple(mask.shape)} does not match ids {tuple(ids.shape)}")
    return ids, mask


def pack(rows: Sequence[Row], steps: int, use_cache: bool, spiking: bool) -> RunContext:
    """Left-pad every row's past and new tokens into one RunContext."""
    bsz = len(rows)
    past = max(r.past for r in rows)
    width = max(len(r.tokens) - r.past for r in rows)
    ids = torch.full((bsz, width), PAD_ID, dtype=torch.long)
    positions = torch.zeros(bsz, width, dtype=torch.long)
    mask = torch.zeros(bsz, past + width, dtype=torch.bool)
    for b, r in enumerate(rows):
        todo = list(r.tokens[r.past :])
        ids[b, width - len(todo) :] = torch.tensor(todo)
        positions[b, width - len(todo) :] = torch.arange(r.past, r.past + len(todo))
        mask[b, past - r.past : past] = True
        mask[b, past + width - len(todo) :] = True
    kv: KV = {}
    if past:
        donors = [r.cache for r in rows if r.past]
        for name in donors[0]:
            if bsz == 1:
                kv[name] = donors[0][name]
                continue
            k0, v0 = donors[0][name]
            k = k0.new_zeros(bsz, k0.shape[1], past, k0.shape[3])
            v = v0.new_zeros(bsz, v0.shape[1], past, v0.shape[3])
            for b, r in enumerate(rows):
                if r.past:
                    pk, pv = r.cache[name]
                    k[b, :, past - r.past :] = pk[0, :, : r.past]
                    v[b, :, past - r.past :] = pv[0, :, : r.past]
            kv[name] = (k, v)
    return RunContext(
        ids,
        steps=steps,
        positions=positions,
        attention_mask=mask,
        kv_cache=kv,
        use_cache=use_cache,
        spiking=spiking,
    )


def unpack(ctx: RunContext, b: int, row: Row) -> KV:
    """Row ``b``'s real cache slots (its past, then its new tokens), without padding."""
    if ctx.attention_mask is None:
        raise StacError("unpack needs a RunContext made by pack(); this one has no attention mask")
    bsz, width = ctx.token_ids.shape
    past = ctx.attention_mask.shape[1] - width
    todo = len(row.tokens) - row.past
    if bsz == 1 and row.past == past and todo == width:
        return dict(ctx.kv_cache)
    index = torch.cat(
        [torch.arange(past - row.past, past), torch.arange(past + width - todo, past + width)]
    )
    return {
        name: (k[b : b + 1, :, index], v[b : b + 1, :, index])
        for name, (k, v) in ctx.kv_cache.items()
    }
