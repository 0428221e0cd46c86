"""Token generation on a TemporalSpikeProcessor: greedy or sampled, streamed, batched.

``stream`` yields each new token as soon as it is chosen, for several conversations at once:
the first step feeds every prompt in one padded batch, later steps feed each still-running
conversation its last token. A conversation stops at a stop id or after ``max_new_tokens``
and leaves the batch; the others go on.

The last token of each reply is chosen but not yet fed to the model (nothing needs its
logits), so it is not in the conversation's history: the caller feeds it with the next input,
as ``stac chat`` does with the end-of-turn tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

import torch

from stac.errors import StacError
from stac.runtime.processor import ConversationId, TemporalSpikeProcessor


@dataclass(frozen=True)
class Sampler:
    """How the next token is picked from the last position's logits."""

    temperature: float = 0.0  # 0: greedy (argmax)
    top_k: int = 0  # keep the k most likely tokens before sampling; 0 keeps all
    seed: int | None = None  # seeds the sampler's own generator (reproducible runs)

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise StacError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise StacError(f"top_k must be >= 0, got {self.top_k}")

    def generator(self) -> torch.Generator:
        gen = torch.Generator()
        if self.seed is None:
            gen.seed()
        else:
            gen.manual_seed(self.seed)
        return gen

    def pick(self, logits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``[B, vocab]`` logits -> ``[B]`` token ids."""
        if self.temperature == 0:
            return logits.argmax(-1)
        scaled = logits / self.temperature
        if self.top_k:
            kth = scaled.topk(min(self.top_k, scaled.shape[-1]), dim=-1).values[..., -1:]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        return torch.multinomial(scaled.softmax(-1), 1, generator=gen)[:, 0]


@dataclass(frozen=True)
class StreamedToken:
    conversation_id: ConversationId
    token_id: int
    index: int  # 0 for the first token of the reply
    finished: str | None  # None while running, then "stop" or "length"


def stream(
    processor: TemporalSpikeProcessor,
    prompts: Mapping[ConversationId, Sequence[int]],
    max_new_tokens: int,
    sampler: Sampler = Sampler(),
    stop_ids: Iterable[int] = (),
    use_cache: bool = True,
) -> Iterator[StreamedToken]:
    """Generate for each conversation in ``prompts`` (new input ids each), token by token."""
    if max_new_tokens < 1:
        raise StacError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not prompts:
        raise StacError("nothing to generate: no conversations given")
    stops = set(stop_ids)
    gen = sampler.generator()
    active = list(prompts)
    feed = [list(prompts[c]) for c in active]
    count = 0
    while active:
        logits = processor(feed, use_cache=use_cache, conversation_ids=active).logits
        lengths = torch.tensor([len(f) for f in feed])
        last = logits[torch.arange(len(active)), lengths - 1]
        picked = sampler.pick(last, gen).tolist()
        count += 1
        still, feed = [], []
        for cid, tok in zip(active, picked, strict=False):
            done = "stop" if tok in stops else "length" if count >= max_new_tokens else None
            yield StreamedToken(cid, int(tok), count - 1, done)
            if done is None:
                still.append(cid)
                feed.append([tok])
        active = still


def generate(
    processor: TemporalSpikeProcessor,
    prompts: Mapping[ConversationId, Sequence[int]],
    max_new_tokens: int,
    sampler: Sampler = Sampler(),
    stop_ids: Iterable[int] = (),
    use_cache: bool = True,
) -> dict[ConversationId, list[int]]:
    """``stream`` collected: the new token ids per conversation."""
    out: dict[ConversationId, list[int]] = {c: [] for c in prompts}
    for tok in stream(processor, prompts, max_new_tokens, sampler, stop_ids, use_cache):
        out[tok.conversation_id].append(tok.token_id)
    return out
