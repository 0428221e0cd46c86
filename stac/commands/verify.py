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
    Check,
    turn_inputs,
    check_bad_input,
    check_positions,
    check_spike_rates,
    check_turns,
)


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
    checks: list[Check] = []

    def run(label: str, fn: Callable[[], list[Check] | Check]) -> None:
        try:
            result = fn()
            checks.extend(result if isinstance(result, list) else [result])
        except StacError as exc:
            checks.append(Check(label, False, f"error: {exc}"))

    proc.spiking = False
    run("positions", lambda: check_positions(proc, ids))
    run("turns (float)", lambda: check_turns(proc, turns))
    proc.spiking = True
    with proc.metering() as meter:
        run("turns (spiking)", lambda: check_turns(proc, turns))
    run("spike rates", lambda: check_spike_rates(proc, meter))
    run("bad input", lambda: check_bad_input(proc, ids))
    return checks


def run(args: argparse.Namespace) -> int:
    checks = verify_artifact(args.artifact, args.timesteps, args.context)
    print(format_checks(checks))
    return 0 if all(c.passed for c in checks) else 1


__all__ = ["run", "verify_artifact"]
