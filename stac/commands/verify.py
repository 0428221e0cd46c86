"""``stac verify``: every runtime check (:mod:`stac.runtime.verify`) on an artifact; exit
status 1 when one fails."""

from __future__ import annotations

import argparse
from typing import Callable

from stac.artifact import load_artifact
from stac.errors import StacError
from stac.frontend.text import play_text, with_bos
from stac.limits import check_finite_graph, model_context
from stac.reporting.checks import format_checks
from stac.runtime.processor import TemporalSpikeProcessor
from stac.runtime.verify import (
    MIN_CONTEXT,
    SPIKING_DTYPE,
    Check,
    turn_inputs,
    check_bad_input,
    check_positions,
    check_spike_rates,
    check_turns,
)


def _run(label: str, fn: Callable[[], list[Check] | Check], into: list[Check]) -> None:
    """Run one check into ``into``; a check that errors counts as failed."""
    try:
        result = fn()
        into.extend(result if isinstance(result, list) else [result])
    except StacError as exc:
        into.append(Check(label, False, f"error: {exc}"))


def _deployment_checks(
    proc: TemporalSpikeProcessor, ids: list[int], turns: dict[str, list[list[int]]]
) -> tuple[list[Check], list[Check]]:
    """The checks on the float32 processor as deployed: (the first ones, the last one)."""
    first: list[Check] = []
    last: list[Check] = []
    proc.spiking = False
    _run("positions", lambda: check_positions(proc, ids), first)
    _run("turns (float)", lambda: check_turns(proc, turns), first)
    proc.spiking = True
    _run("bad input", lambda: check_bad_input(proc, ids), last)
    return first, last


def verify_artifact(path: str, steps: int | None = None, context: int = 48) -> list[Check]:
    """Run every check on the artifact at ``path``; a check that errors counts as failed."""
    if context < MIN_CONTEXT:
        raise StacError(f"--context must be at least {MIN_CONTEXT} for the turn checks")
    artifact = load_artifact(path)
    check_finite_graph(artifact.graph, str(path))
    model_context(artifact.graph.metadata)
    tokenizer = artifact.tokenizer()
    proc = TemporalSpikeProcessor(artifact, T=steps, max_context_length=context)
    text = tokenizer(
        play_text("tragedies/hamlet")[:20000], add_special_tokens=False, return_tensors="pt"
    ).input_ids[0]
    ids = with_bos(tokenizer, text).tolist()
    if len(ids) < context + 2:
        raise StacError(f"--context {context} is longer than the verification text")
    turns = turn_inputs(ids[1:], tokenizer.bos_token_id)
    checks, last = _deployment_checks(proc, ids, turns)
    del proc  # the spiking checks use their own processor, in float64 (see stac.runtime.verify)
    exact = TemporalSpikeProcessor(
        artifact, T=steps, max_context_length=context, dtype=SPIKING_DTYPE
    )
    with exact.metering() as meter:
        _run("turns (spiking)", lambda: check_turns(exact, turns), checks)
    _run("spike rates", lambda: check_spike_rates(exact, meter), checks)
    return checks + last


def run(args: argparse.Namespace) -> int:
    checks = verify_artifact(args.artifact, args.timesteps, args.context)
    print(format_checks(checks))
    return 0 if all(c.passed for c in checks) else 1


__all__ = ["run", "verify_artifact"]
