"""`stac chat` and `stac verify` end to end, and the chat session's use of the template."""

from __future__ import annotations

import dataclasses
import io
import re
import shutil

import pytest

from stac.artifact import IR_FILE, load_artifact, write_manifest
from stac.cli import main
from stac.ir import save
from stac.ir.graph import make_graph
from stac.ir.nodes import SignedIF
from stac.runtime import TemporalSpikeProcessor
from stac.commands.chat import run_chat
from stac.runtime.chat import ChatSession
from stac.runtime.generate import generate

SUMMARY = re.compile(
    r"\[(\d+) prompt \+ (\d+) reply tokens \((stop|length)\), context (\d+)(?:, (\d+) evicted)?; "
    r"(\d+) tokens, ([\d,]+) spikes, est\. ([\d.e+-]+) mJ .* on loihi2, (\S+) estimate; "
)
CHECKS = [
    "positions at the limit",
    "positions past the limit",
    "mask continuity across turns",
    "incremental = full recompute",
    "batch = conversations alone",
    "no dead or saturated layers",
    "bad input rejected, others intact",
]


@pytest.fixture(scope="module")
def tiny(tiny_gpt2_artifact):
    return load_artifact(tiny_gpt2_artifact)


def _summary(text: str) -> re.Match:
    match = SUMMARY.search(text)
    assert match, text
    return match


def test_chat_one_turn_on_the_bundled_model(smollm2_artifact, capsys):
    question = "What is the capital of France?"
    assert main(["chat", str(smollm2_artifact), "--prompt", question, "--max-new-tokens", "3"]) == 0
    out = capsys.readouterr().out
    m = _summary(out)
    tokenizer = load_artifact(smollm2_artifact).tokenizer()
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    assert int(m[1]) == len(tokenizer(rendered, add_special_tokens=False).input_ids)
    assert 1 <= int(m[2]) <= 3
    assert int(m[7].replace(",", "")) > 0 and float(m[8]) > 0


def test_chat_reply_is_greedy_generation_on_the_template(tiny_gpt2_artifact, tiny, capsys):
    question = "Hello there, who are you?"
    assert (
        main(["chat", str(tiny_gpt2_artifact), "--prompt", question, "--max-new-tokens", "5"]) == 0
    )
    out = capsys.readouterr().out
    reply = out[: out.rindex("\n[")]
    tokenizer = tiny.tokenizer()
    ids = tokenizer(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        ),
        add_special_tokens=False,
    ).input_ids
    proc = TemporalSpikeProcessor(tiny, max_context_length=256)
    proc.open("c")
    want = generate(proc, {"c": ids}, 5, stop_ids=[tokenizer.eos_token_id])["c"]
    assert reply == tokenizer.decode(want, skip_special_tokens=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompt", "   "], "empty turn"),
        (["--prompt", "word " * 40, "--context", "24"], "does not fit the context of 24 tokens"),
        (["--prompt", "hi", "--context", "100000"], "max_context_length=100000 must be in 1..256"),
        (["--prompt", "hi", "--temperature", "-1"], "temperature must be >= 0"),
    ],
)
def test_chat_bad_input_is_one_error_line(tiny_gpt2_artifact, capsys, args, message):
    assert main(["chat", str(tiny_gpt2_artifact), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stac: error: ") and message in err and err.count("\n") == 1


def test_chat_and_verify_refuse_a_missing_artifact(tmp_path, capsys):
    for command in ("chat", "verify"):
        assert main([command, str(tmp_path / "nothing")]) == 2
        assert "is not a stac artifact" in capsys.readouterr().err


def test_interactive_chat_reset_quit_and_bad_turns(tiny_gpt2_artifact, capsys):
    lines = iter(["Hello", "", "/reset", "Hello", "/bogus", "And then?", "/quit", "never read"])
    out = io.StringIO()
    assert (
        run_chat(
            str(tiny_gpt2_artifact), max_new_tokens=3, out=out, read=lambda prompt: next(lines)
        )
        == 0
    )
    text = out.getvalue()
    summaries = [
        _summary(line) for line in text.splitlines() if line.startswith("[") and "prompt +" in line
    ]
    assert len(summaries) == 3
    assert "[conversation reset]" in text and "unknown command /bogus" in text
    first, after_reset, second_turn = summaries
    assert after_reset[1] == first[1] and after_reset[4] == first[4]  # a fresh context
    assert int(second_turn[4]) > int(after_reset[4])  # the third turn kept the second
    assert "stac: error: empty turn" in capsys.readouterr().err
    assert next(lines) == "never read"


def test_session_history_is_the_rendered_conversation(tiny):
    tokenizer = tiny.tokenizer()
    proc = TemporalSpikeProcessor(tiny, max_context_length=60)
    session = ChatSession(proc, tokenizer, max_new_tokens=4)
    system = (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
        "Hugging Face<|im_end|>\n"
    )  # what SmolLM2's template adds without a system message
    system_ids = tokenizer(system, add_special_tokens=False).input_ids
    assert session.pinned == len(system_ids)
    evicted = 0
    for turn in ("Tell me about owls.", "And about cats?", "Which is better?", "Why?"):
        "".join(session.turn(turn))
        history = proc.history(session.conversation)
        assert history[: session.pinned] == system_ids  # eviction never drops the system part
        evicted += session.last.evicted
        if not evicted:  # until something is evicted, history + carry is the rendered text
            assert tokenizer.decode(history + session.carry) == session.rendered
            assert session.rendered.startswith(system)
    assert evicted > 0 and len(proc.history(session.conversation)) <= 60
    session.reset()
    assert proc.history(session.conversation) == [] and session.carry == []


def test_verify_passes_on_the_bundled_model(smollm2_artifact, capsys):
    assert main(["verify", str(smollm2_artifact), "--context", "32"]) == 0
    out = capsys.readouterr().out
    for name in CHECKS:
        assert re.search(rf"^{re.escape(name)}.*PASS", out, re.M), name
    assert "10 of 10 checks passed" in out and "FAIL" not in out


def test_verify_fails_on_a_dead_layer(tiny_gpt2_artifact, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_gpt2_artifact, broken)
    graph = load_artifact(broken).graph
    name = "layer1_down_in"
    node = graph.nodes[name]
    assert isinstance(node, SignedIF)
    nodes = dict(graph.nodes)
    nodes[name] = dataclasses.replace(node, threshold=node.threshold * 1e6)  # never reaches it
    save(make_graph(nodes, graph.edges, graph.metadata), broken / IR_FILE)
    write_manifest(broken)  # a deliberate edit: record it, or loading refuses the changed file
    assert main(["verify", str(broken), "--context", "32"]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("no dead or saturated"))
    assert "FAIL" in row and f"dead (< 0.001): {name}" in row
    assert "9 of 10 checks passed; 1 FAILED" in out
