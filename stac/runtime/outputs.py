"""What a :class:`stac.runtime.TemporalSpikeProcessor` call returns.

In the manner of transformers' ``CausalLMOutputWithPast``: named fields (``out.logits``), and
indexable by position or name (``out[0]`` and ``out["logits"]`` are the logits), so code written
for a transformers model's output reads a processor's the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Hashable

import torch

#: One conversation's KV cache: per attention node ``(k, v)``, each
#: ``[1, kv_heads, cached, head_dim]`` with the keys already rotated.
KVCache = dict[str, tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class SpikeCausalLMOutput:
    """The logits of one call and the host state it left behind."""

    logits: torch.Tensor  # [B, N, vocab], 0 at padding slots
    past_key_values: tuple[KVCache, ...]  # per row, its conversation's cache after the call
    conversation_ids: tuple[Hashable, ...]  # the conversation each row continued

    def to_tuple(self) -> tuple[Any, ...]:
        """The fields in order, as transformers' ``ModelOutput.to_tuple``."""
        return tuple(getattr(self, f.name) for f in fields(self))

    def __getitem__(self, key: int | slice | str) -> Any:
        """``out["logits"]`` by name, ``out[0]`` / ``out[:2]`` by position in the field order."""
        if isinstance(key, str):
            if key not in {f.name for f in fields(self)}:
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]


__all__ = ["KVCache", "SpikeCausalLMOutput"]
