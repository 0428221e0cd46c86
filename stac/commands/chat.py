"""``stac chat``: an interactive (or one-turn) conversation with a compiled artifact, each turn
streamed and followed by its tokens, spikes and estimated energy on the artifact's profile."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, TextIO

from stac.artifact import load_artifact
from stac.errors import StacError
from stac.frontend.text import check_utf8
from stac.limits import check_finite_graph, model_context
from stac.runtime.chat import ChatSession
from stac.runtime.generate import Sampler
from stac.runtime.processor import TemporalSpikeProcessor

DEFAULT_CONTEXT = 512  # tokens per conversation, or the model's limit when that is less
HELP = "type a message; /reset starts over, /quit (or end of input) leaves"


def run_chat(
    artifact_path: str,
    prompt: str | None = None,
    system: str | None = None,
    steps: int | None = None,
    max_new_tokens: int = 128,
    context: int | None = None,
    sampler: Sampler | None = None,
    out: TextIO | None = None,
    read: Any = input,
) -> int:
    """The ``stac chat`` loop: one turn for ``prompt``, else read turns until /quit or EOF."""
    out = out or sys.stdout
    sampler = sampler or Sampler()
    artifact = load_artifact(artifact_path)
    check_finite_graph(artifact.graph, str(artifact_path))
    if context is None:
        context = min(DEFAULT_CONTEXT, model_context(artifact.graph.metadata) or DEFAULT_CONTEXT)
    processor = TemporalSpikeProcessor(artifact, T=steps, max_context_length=context)
    session = ChatSession(processor, artifact.tokenizer(), system, sampler, max_new_tokens)

    def one_turn(text: str) -> None:
        for piece in session.turn(text):
            out.write(piece)
            out.flush()
        out.write("\n" + session.last.summary() + "\n")
        out.flush()

    if prompt is not None:
        one_turn(prompt)
        return 0
    out.write(
        f"stac chat: {artifact.config.get('source_model')} at T={processor.T}, context "
        f"{context} tokens ({session.pinned} pinned); {HELP}\n"
    )
    while True:
        try:
            text = check_utf8("the message", read("you> "))
        except EOFError:
            out.write("\n")
            return 0
        except (UnicodeDecodeError, StacError):  # a line that is not UTF-8: say so, go on
            print("stac: error: the message is not valid UTF-8 text", file=sys.stderr)
            continue
        command = text.strip()
        if command == "/quit":
            return 0
        if command == "/reset":
            session.reset()
            out.write("[conversation reset]\n")
            continue
        if command.startswith("/"):
            out.write(f"[unknown command {command}; {HELP}]\n")
            continue
        try:
            one_turn(text)
        except StacError as exc:  # a bad turn leaves the conversation as it was
            print(f"stac: error: {exc}", file=sys.stderr)


def check_args(args: argparse.Namespace) -> None:
    """Every option checked before the artifact is read."""
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise StacError(f"--temperature must be >= 0 and finite, got {args.temperature}")
    if args.top_k < 0:
        raise StacError(f"--top-k must be >= 0, got {args.top_k}")
    if args.max_new_tokens < 1:
        raise StacError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.context is not None and args.context < 1:
        raise StacError(f"--context must be at least 1 token, got {args.context}")
    for option, text in (("--prompt", args.prompt), ("--system", args.system)):
        if text is not None:
            check_utf8(option, text)


def run(args: argparse.Namespace) -> int:
    check_args(args)
    sampler = Sampler(args.temperature, args.top_k, args.seed)
    return run_chat(
        args.artifact,
        args.prompt,
        args.system,
        args.timesteps,
        args.max_new_tokens,
        args.context,
        sampler,
    )


__all__ = ["DEFAULT_CONTEXT", "HELP", "run", "run_chat"]
