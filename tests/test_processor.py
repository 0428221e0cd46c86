"""TemporalSpikeProcessor: KV cache, positions, masks, batches, eviction, generation, errors."""

from __future__ import annotations

import pytest
import torch

from stac.artifact import load_artifact
from stac.errors import StacError
from stac.runtime import TemporalSpikeProcessor
from stac.runtime.energy import estimate
from stac.runtime.generate import Sampler, generate, stream
from stac.sim.semantics import RunContext

ATOL = 1e-4  # float32 round-off between a cached step and a full recompute (spiking off)


@pytest.fixture(scope="module")
def tiny(tiny_gpt2_artifact):
    return load_artifact(tiny_gpt2_artifact)


@pytest.fixture(scope="module")
def text_ids(hamlet_ids) -> list[int]:
    return [1] + hamlet_ids[:200].tolist()  # BOS first, as the chat template starts


def fresh(proc: TemporalSpikeProcessor, tokens: list[int]) -> torch.Tensor:
    cid = proc.open()
    out = proc([tokens], use_cache=False, conversation_ids=[cid]).logits[0]
    proc.remove(cid)
    return out


def test_call_without_ids_continues_conversation_zero(tiny, text_ids):
    proc = TemporalSpikeProcessor(tiny, T=4, max_context_length=64)
    first = proc(torch.tensor([text_ids[:5]]), use_cache=True).logits
    assert first.shape == (1, 5, tiny.graph.metadata["vocab_size"])
    proc(torch.tensor([text_ids[5:8]]))
    assert proc.last_run.positions.tolist() == [[5, 6, 7]]
    assert proc.last_run.past == (5,)
    assert proc.last_run.attention_mask.tolist() == [[True] * 8]
    assert proc.history(0) == text_ids[:8]
    assert proc.cache_bytes(0) > 0


@pytest.mark.parametrize("spiking", [False, True])
def test_cached_turns_equal_full_recompute(tiny, text_ids, spiking):
    proc = TemporalSpikeProcessor(tiny, max_context_length=64, spiking=spiking)
    cid = proc.open()
    turns = [text_ids[:7], text_ids[7:10], text_ids[10:11], text_ids[11:12], text_ids[12:20]]
    incremental = torch.cat([proc([t], conversation_ids=[cid]).logits[0] for t in turns])
    full = fresh(proc, text_ids[:20])
    diff = (incremental - full).abs().amax(-1)
    # Spiking: an encoder drive within round-off of a level boundary may round the other way
    # (see stac/runtime/verify.py); the tiny model shows none, so require all positions.
    assert float(diff.max()) <= ATOL, diff
    # The comparison can fail: the same tokens at other positions give other logits.
    shifted = proc([text_ids[:20]], conversation_ids=[cid]).logits[0]
    assert float((shifted - full).abs().max()) > 0.1


def test_batch_of_different_lengths_equals_each_alone(tiny, text_ids):
    proc = TemporalSpikeProcessor(tiny, max_context_length=64, spiking=False)
    a, b = proc.open("a"), proc.open("b")
    turns = {
        "a": [text_ids[:9], text_ids[9:11], text_ids[11:12]],
        "b": [text_ids[50:53], text_ids[53:60], text_ids[60:61]],
    }
    alone = {c: proc.open() for c in "ab"}
    past = {"a": 0, "b": 0}
    for t in range(3):
        rows = [turns["a"][t], turns["b"][t]]
        batch = proc(rows, conversation_ids=[a, b]).logits
        run = proc.last_run
        width, total = run.token_ids.shape[1], run.attention_mask.shape[1]
        for row, c in enumerate("ab"):
            n = len(turns[c][t])
            # left padding: [pad past | real past | pad new | real new]
            want = (
                [False] * (total - width - past[c])
                + [True] * past[c]
                + [False] * (width - n)
                + [True] * n
            )
            assert run.attention_mask[row].tolist() == want
            assert run.positions[row, width - n :].tolist() == list(range(past[c], past[c] + n))
            single = proc([turns[c][t]], conversation_ids=[alone[c]]).logits[0]
            assert torch.allclose(batch[row, :n], single, atol=ATOL)
            assert not batch[row, n:].any()  # padding slots give zeros
            past[c] += n
    assert proc.history("a") == text_ids[:12] and proc.history("b") == text_ids[50:61]


def test_padded_tensor_with_mask_equals_list_input(tiny, text_ids):
    proc = TemporalSpikeProcessor(tiny, max_context_length=64, spiking=False)
    ids = torch.tensor([text_ids[:6], [0, 0] + text_ids[10:14]])
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])
    out = proc(ids, attention_mask=mask).logits
    pair = [proc.open(), proc.open()]
    ref = proc([text_ids[:6], text_ids[10:14]], conversation_ids=pair).logits
    assert torch.allclose(out[0], ref[0], atol=ATOL)
    assert torch.allclose(out[1, 2:], ref[1, :4], atol=ATOL)
    assert proc.history(1) == text_ids[10:14]


def test_eviction_keeps_pinned_slides_rest_and_re_encodes(tiny, text_ids):
    limit, pinned = 16, 3
    proc = TemporalSpikeProcessor(
        tiny, max_context_length=limit, evict_fraction=0.25, spiking=False
    )
    cid = proc.open(pinned=pinned)
    proc([text_ids[:limit]], conversation_ids=[cid])
    assert proc.last_run.evicted == (0,) and max(proc.last_run.positions[0]) == limit - 1
    out = proc([text_ids[limit : limit + 2]], conversation_ids=[cid]).logits[0]
    drop = 4  # max(overflow 2, ceil(0.25 * (16 - 3)) = 4)
    kept = text_ids[:pinned] + text_ids[pinned + drop : limit + 2]
    assert proc.last_run.evicted == (drop,)
    assert proc.history(cid) == kept and proc.get(cid).evicted == drop
    assert proc.last_run.positions[0].tolist() == list(range(len(kept)))  # re-encoded from 0
    assert torch.allclose(out, fresh(proc, kept)[-2:], atol=ATOL)
    nxt = proc([[text_ids[40]]], conversation_ids=[cid]).logits[0]
    assert proc.last_run.positions.tolist() == [[len(kept)]] and proc.last_run.past == (len(kept),)
    assert torch.allclose(nxt, fresh(proc, kept + [text_ids[40]])[-1:], atol=ATOL)


def test_eviction_with_rope_equals_fresh_window(smollm2_artifact, hamlet_ids):
    """SmolLM2 (RoPE): after eviction the kept keys are re-rotated at positions 0.."""
    proc = TemporalSpikeProcessor(smollm2_artifact, max_context_length=12, spiking=False)
    ids = [1] + hamlet_ids[:20].tolist()
    cid = proc.open(pinned=2)
    proc([ids[:11]], conversation_ids=[cid])
    out = proc([ids[11:13]], conversation_ids=[cid]).logits[0]
    kept = proc.history(cid)
    assert kept[:2] == ids[:2] and kept[-2:] == ids[11:13] and len(kept) <= 12
    assert proc.last_run.positions[0].tolist() == list(range(len(kept)))
    ref = fresh(proc, kept)[-2:]
    assert float((out - ref).abs().max()) <= 1e-3
    # Keys kept at their old rotation (positions with the gap of the dropped tokens) give
    # other logits, so the comparison above can fail.
    drop = 13 - len(kept)
    old = list(range(2)) + list(range(2 + drop, 13))
    gap, _ = proc.simulator.run(
        RunContext(torch.tensor([kept]), steps=proc.T, positions=torch.tensor([old]), spiking=False)
    )
    assert float((gap["output"][0, -2:] - ref).abs().max()) > 0.1


def test_reset_and_remove_touch_one_conversation(tiny, text_ids):
    proc = TemporalSpikeProcessor(tiny, max_context_length=64)
    a, b = proc.open("a"), proc.open("b", pinned=2)
    proc([text_ids[:5], text_ids[20:27]], conversation_ids=[a, b])
    cache_a = {k: v[0].clone() for k, v in proc.get(a).cache.items()}
    proc.reset(b)
    assert proc.history(b) == [] and proc.cache_bytes(b) == 0 and proc.get(b).pinned == 2
    assert proc.history(a) == text_ids[:5]
    assert all(torch.equal(proc.get(a).cache[k][0], v) for k, v in cache_a.items())
    proc([text_ids[30:33]], conversation_ids=[b])
    assert proc.last_run.positions.tolist() == [[0, 1, 2]]  # b starts over at position 0
    proc.remove(b)
    assert proc.conversations == [a]
    with pytest.raises(StacError, match="unknown conversation id 'b'"):
        proc.history(b)


BAD_CALLS = {
    "too long": (
        lambda p, ids: p([ids[:2], ids[:40]], conversation_ids=["keep", "x"]),
        "does not fit the context of 32 tokens",
    ),
    "unknown id": (
        lambda p, ids: p([ids[:2], ids[:2]], conversation_ids=["keep", "nope"]),
        "unknown conversation id 'nope'",
    ),
    "empty turn": (
        lambda p, ids: p(
            torch.tensor([ids[:2], ids[:2]]),
            conversation_ids=["keep", "x"],
            attention_mask=torch.tensor([[1, 1], [0, 0]]),
        ),
        "empty turn for conversation 'x'",
    ),
    "negative id": (
        lambda p, ids: p([ids[:2], [5, -1]], conversation_ids=["keep", "x"]),
        "token id -1 for conversation 'x' is outside the vocabulary",
    ),
    "id past vocab": (
        lambda p, ids: p([ids[:2], [49152]], conversation_ids=["keep", "x"]),
        "token id 49152 .* outside the vocabulary 0..49151",
    ),
    "float ids": (lambda p, _ids: p(torch.ones(1, 3)), "input ids must be integers"),
    "same id twice": (
        lambda p, ids: p([ids[:2], ids[:2]], conversation_ids=["keep", "keep"]),
        "appears twice",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_input_is_an_error_and_other_conversations_stay_intact(tiny, text_ids, case):
    proc = TemporalSpikeProcessor(tiny, max_context_length=32)
    proc.open("keep")
    proc.open("x")
    proc([text_ids[:6]], conversation_ids=["keep"])
    before = {k: (a.clone(), b.clone()) for k, (a, b) in proc.get("keep").cache.items()}
    call, message = BAD_CALLS[case]
    with pytest.raises(StacError, match=message):
        call(proc, text_ids)
    keep = proc.get("keep")
    assert keep.tokens == text_ids[:6] and keep.cached == 6
    assert all(
        torch.equal(keep.cache[k][0], a) and torch.equal(keep.cache[k][1], b)
        for k, (a, b) in before.items()
    )
    assert proc.history("x") == [] and proc.conversations == ["keep", "x"]
    proc([text_ids[6:8]], conversation_ids=["keep"])  # and it goes on where it was
    assert proc.last_run.positions.tolist() == [[6, 7]]


def test_bad_construction(tiny):
    with pytest.raises(StacError, match="max_context_length=300 must be in 1..256"):
        TemporalSpikeProcessor(tiny, max_context_length=300)
    with pytest.raises(StacError, match="T=0 is outside"):
        TemporalSpikeProcessor(tiny, T=0)
    with pytest.raises(StacError, match="artifact directory, an Artifact or an IR graph"):
        TemporalSpikeProcessor(42)


def test_greedy_generation_streams_and_matches_no_cache(tiny, text_ids):
    prompts = {"a": text_ids[:6], "b": text_ids[30:33]}
    cached = TemporalSpikeProcessor(tiny, max_context_length=64, spiking=False)
    plain = TemporalSpikeProcessor(tiny, max_context_length=64, spiking=False)
    for p in (cached, plain):
        p.open("a"), p.open("b")
    events = list(stream(cached, prompts, max_new_tokens=5))
    assert [e.index for e in events if e.conversation_id == "a"] == [0, 1, 2, 3, 4]
    assert events[-1].finished == "length"
    got = {c: [e.token_id for e in events if e.conversation_id == c] for c in prompts}
    assert generate(plain, prompts, 5, use_cache=False) == got
    # each greedy token is the argmax of a from-scratch run on the history before it
    hist = prompts["a"] + got["a"][:-1]
    assert cached.history("a") == hist
    ref = fresh(plain, hist)
    assert ref[len(prompts["a"]) - 1 :].argmax(-1).tolist() == got["a"]


def greedy_reply(proc: TemporalSpikeProcessor, prompt: list[int], n: int) -> list[int]:
    """The greedy reply by from-scratch recomputation: no cache, no ``stream``."""
    history, reply = list(prompt), []
    for _ in range(n):
        reply.append(int(fresh(proc, history)[-1].argmax()))
        history.append(reply[-1])
    return reply


def test_stop_token_ends_one_conversation_only(tiny, text_ids):
    """docs/chat.md: a conversation leaves the batch at a stop id (that token is its last,
    finished "stop") or after max_new_tokens (finished "length"); the others go on."""
    proc = TemporalSpikeProcessor(tiny, max_context_length=64)
    prompts = {0: text_ids[:6], 1: text_ids[40:44]}
    ref = {c: greedy_reply(proc, p, 4) for c, p in prompts.items()}
    first = ref[0][0]
    # the data make the two cases below distinct: conversation 1's reply never produces
    # conversation 0's first token, and its second token is new in its reply
    assert first not in ref[1] and ref[1][1] != ref[1][0], ref
    for stops, want_1 in (
        ([first], [(t, i, None) for i, t in enumerate(ref[1][:3])] + [(ref[1][3], 3, "length")]),
        ([first, ref[1][1]], [(ref[1][0], 0, None), (ref[1][1], 1, "stop")]),
    ):
        for c in prompts:
            proc.open(c)
        events = list(stream(proc, prompts, 4, stop_ids=stops))
        got = {
            c: [(e.token_id, e.index, e.finished) for e in events if e.conversation_id == c]
            for c in prompts
        }
        assert got == {0: [(first, 0, "stop")], 1: want_1}, stops
        for c in prompts:
            proc.remove(c)


def test_seeded_sampling_is_reproducible_and_top1_is_greedy(tiny, text_ids):
    proc = TemporalSpikeProcessor(tiny, max_context_length=64)
    runs = []
    for sampler in (Sampler(1.0, 0, 7), Sampler(1.0, 0, 7), Sampler(5.0, 1, 3), Sampler()):
        proc.open("s")
        runs.append(generate(proc, {"s": text_ids[:5]}, 6, sampler)["s"])
        proc.remove("s")
    assert runs[0] == runs[1]
    assert runs[2] == runs[3]  # top-1 sampling is greedy whatever the temperature
    with pytest.raises(StacError, match="temperature must be >= 0"):
        Sampler(-1.0)


def test_metered_energy_uses_the_artifact_profile(tiny, text_ids):
    proc = TemporalSpikeProcessor(tiny, max_context_length=64)
    with proc.metering() as one:
        proc([text_ids[:4]])
    with proc.metering() as two:
        proc([text_ids[4:12]])
        proc([text_ids[12:13]])
    assert (one.tokens, one.runs, two.tokens, two.runs) == (4, 1, 9, 2)
    e1, e2 = estimate(proc.graph, one, proc.T), estimate(proc.graph, two, proc.T)
    assert e1.profile == "loihi2" and e1.spikes > 0 and e1.energy_j > 0
    assert e2.spikes == sum(s.spikes for s in two.stats.values()) > e1.spikes
    assert e2.energy_j > e1.energy_j
    # Every token sends its host ops' values across the chip-host link, and it is priced.
    assert e1.link_j > 0 and e2.link_j > e1.link_j
    with pytest.raises(StacError, match="nothing was run"):
        with proc.metering() as empty:
            pass
        estimate(proc.graph, empty, proc.T)
