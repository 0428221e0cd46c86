"""Multi-turn chat on a compiled artifact, with the model's chat template (``ChatSession``;
the ``stac chat`` loop is :mod:`stac.commands.chat`).

Each turn feeds only what is new since the last one (the template's rendering of the new user
message and the end of the previous reply) to the processor, whose KV cache holds the rest.
The template must be append-only (rendering more messages only appends text), which is
checked every turn. The system part the template renders before the first user message is
pinned: context eviction never drops it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Iterator

from stac.errors import StacError
from stac.runtime.energy import EnergyEstimate, estimate
from stac.runtime.generate import Sampler, stream
from stac.runtime.processor import TemporalSpikeProcessor

log = logging.getLogger(__name__)

_PROBE, _PROBE2 = "stac-probe-0", "stac-probe-1"


@dataclass(frozen=True)
class TurnResult:
    prompt_tokens: int  # tokens fed for this turn (end of the last reply + the new message)
    reply_ids: list[int]
    reply: str
    finished: str  # "stop", "length" or "interrupted"
    evicted: int  # tokens the context policy dropped during the turn
    context: int  # tokens in the conversation's context after the turn
    seconds: float  # simulator wall time
    energy: EnergyEstimate

    def summary(self) -> str:
        rate = len(self.reply_ids) / self.seconds if self.seconds else 0.0
        evicted = f", {self.evicted} evicted" if self.evicted else ""
        return (
            f"[{self.prompt_tokens} prompt + {len(self.reply_ids)} reply tokens "
            f"({self.finished}), context {self.context}{evicted}; {self.energy.line()}; "
            f"{rate:.2f} tokens/s simulated]"
        )


class ChatSession:
    """One conversation on a processor, spoken through the tokenizer's chat template."""

    def __init__(
        self,
        processor: TemporalSpikeProcessor,
        tokenizer: Any,
        system: str | None = None,
        sampler: Sampler | None = None,
        max_new_tokens: int = 128,
        conversation_id: Any = None,
    ) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise StacError("the artifact's tokenizer has no chat template; stac chat needs one")
        if max_new_tokens < 1:
            raise StacError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.processor, self.tokenizer = processor, tokenizer
        self.system, self.max_new_tokens = system, max_new_tokens
        self.sampler = sampler if sampler is not None else Sampler()
        self.conversation = processor.open(conversation_id)
        self._closing = self._closing_text()
        self._closing_ids = self._ids(self._closing)
        self.stop_ids = {i for i in (tokenizer.eos_token_id,) if i is not None}
        if self._closing_ids and self._closing_ids[0] in tokenizer.all_special_ids:
            self.stop_ids.add(self._closing_ids[0])
        self.reset()

    # ----- template handling ---------------------------------------------------------------

    def _render(self, messages: list[dict[str, str]], generation_prompt: bool) -> str:
        try:
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation_prompt
            )
        except Exception as exc:  # jinja errors from the template itself
            raise StacError(f"the chat template failed to render: {exc}") from None

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _base(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}] if self.system else []

    def _closing_text(self) -> str:
        """What the template writes after an assistant message's content."""
        text = self._render(
            self._base()
            + [{"role": "user", "content": _PROBE}, {"role": "assistant", "content": _PROBE2}],
            False,
        )
        return text[text.rindex(_PROBE2) + len(_PROBE2) :]

    def _system_prefix(self) -> str:
        """The text the template renders before the first user message (the system part)."""
        one = self._base() + [
            {"role": "user", "content": _PROBE},
            {"role": "assistant", "content": _PROBE},
        ]
        before = self._render(one, False)
        after = self._render(one + [{"role": "user", "content": _PROBE2}], False)
        if not after.startswith(before):
            return ""
        turn = after[len(before) :]
        header = turn[: turn.index(_PROBE2)]
        first = self._render(self._base() + [{"role": "user", "content": _PROBE}], True)
        at = first.find(header + _PROBE)
        return first[:at] if at > 0 else ""

    # ----- turns ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Start the conversation over (its processor state included)."""
        self.processor.reset(self.conversation)
        self.messages = self._base()
        self.rendered = ""  # template text the conversation's history stands for
        self.carry: list[int] = []  # end of the last reply, fed with the next turn
        prefix = self._system_prefix()
        self.pinned = len(self._ids(prefix)) if prefix else 0
        if not prefix:
            log.warning("no system part found in the chat template; eviction pins nothing")

    def turn(self, text: str) -> Iterator[str]:
        """Stream the reply to ``text`` as text pieces; then ``self.last`` holds the result."""
        if not text.strip():
            raise StacError("empty turn: type a message (or /quit)")
        messages = self.messages + [{"role": "user", "content": text}]
        full = self._render(messages, True)
        if not full.startswith(self.rendered):
            raise StacError(
                "the chat template re-renders earlier turns differently; stac chat "
                "needs an append-only template"
            )
        prompt = self.carry + self._ids(full[len(self.rendered) :])
        if not self.rendered:
            self.processor.set_pinned(self.conversation, min(self.pinned, len(prompt)))
        conv = self.processor.get(self.conversation)
        evicted_before, reply, finished = conv.evicted, [], "interrupted"
        started = time.perf_counter()
        with self.processor.metering() as meter:
            try:
                shown = text_now = ""
                for tok in stream(
                    self.processor,
                    {self.conversation: prompt},
                    self.max_new_tokens,
                    self.sampler,
                    self.stop_ids,
                ):
                    reply.append(tok.token_id)
                    finished = tok.finished or finished
                    text_now = self.tokenizer.decode(reply, skip_special_tokens=True)
                    if not text_now.endswith("\ufffd") and len(text_now) > len(shown):
                        yield text_now[len(shown) :]
                        shown = text_now
                if len(text_now) > len(shown):  # an incomplete character at the very end
                    yield text_now[len(shown) :]
            finally:
                if reply:  # commit what was generated, even when interrupted
                    self._commit(messages, full, reply)
        shown_ids = reply[:-1] if reply and reply[-1] in self.stop_ids else reply
        self.last = TurnResult(
            prompt_tokens=len(prompt),
            reply_ids=reply,
            reply=self.tokenizer.decode(shown_ids, skip_special_tokens=True),
            finished=finished,
            evicted=conv.evicted - evicted_before,
            context=len(conv.tokens),
            seconds=time.perf_counter() - started,
            energy=estimate(
                self.processor.graph,
                meter,
                self.processor.T,
                self.processor.profile,
                self.processor.host_profile,
            ),
        )

    def _commit(self, messages: list[dict[str, str]], full: str, reply: list[int]) -> None:
        """Record the reply; its last token and the template's closing go with the next turn."""
        content = reply[:-1] if reply[-1] in self.stop_ids else reply
        reply_text = self.tokenizer.decode(content, skip_special_tokens=False)
        self.messages = messages + [{"role": "assistant", "content": reply_text}]
        self.rendered = full + reply_text + self._closing
        closing = self._closing_ids
        if reply[-1] in self.stop_ids and closing and reply[-1] == closing[0]:
            closing = closing[1:]
        self.carry = [reply[-1]] + closing


__all__ = ["ChatSession", "TurnResult"]
