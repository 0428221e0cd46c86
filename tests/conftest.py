"""Shared fixtures: the bundled SmolLM2 (real weights) and GPT-2 models with random weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from stac.frontend import LoadedModel, load_model


@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    return load_model("smollm2-135m")


def _gpt2(tmp: Path, tokenizer, **shape) -> Path:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, **shape)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return tmp


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, smollm2) -> Path:
    """A 2-layer, 64-wide GPT-2 with random weights and SmolLM2's tokenizer."""
    return _gpt2(
        tmp_path_factory.mktemp("tiny-gpt2"), smollm2.tokenizer, n_layer=2, n_embd=64, n_head=4
    )


@pytest.fixture(scope="session")
def distilgpt2_shape_dir(tmp_path_factory, smollm2) -> Path:
    """distilgpt2's shape (6 layers, 768 wide, 12 heads) with random weights."""
    return _gpt2(
        tmp_path_factory.mktemp("distilgpt2-shape"),
        smollm2.tokenizer,
        n_layer=6,
        n_embd=768,
        n_head=12,
    )


def _compile_tiny(model_dir: Path, out: Path) -> Path:
    """``model_dir`` compiled for loihi2-sim at T = 4 (one calibration window) into ``out``."""
    from stac.commands.compile import CompileRequest, compile_model
    from stac.frontend import ConversionConfig

    compile_model(
        CompileRequest(
            model=str(model_dir),
            target="loihi2-sim",
            output_dir=out,
            conversion=ConversionConfig(timesteps=4, calibration_passages=1),
        )
    )
    return out


@pytest.fixture(scope="session")
def tiny_gpt2_artifact(tmp_path_factory, tiny_gpt2_dir) -> Path:
    """``tiny_gpt2_dir`` compiled for loihi2-sim at T = 4 (one calibration window).

    Shared, read-only: a test that needs to change it copies it first.
    """
    return _compile_tiny(tiny_gpt2_dir, tmp_path_factory.mktemp("tiny-artifact") / "tiny")


@pytest.fixture(scope="session")
def tiny_llama_artifact(tmp_path_factory, tiny_llama_dir) -> Path:
    """``tiny_llama_dir`` compiled for loihi2-sim at T = 4 as ``tiny_gpt2_artifact`` is.

    Shared, read-only: a test that needs to change it copies it first.
    """
    return _compile_tiny(
        tiny_llama_dir, tmp_path_factory.mktemp("tiny-llama-artifact") / "artifact"
    )


@pytest.fixture(scope="session")
def smollm2_artifact(tmp_path_factory, smollm2) -> Path:
    """The bundled SmolLM2 compiled for loihi2-sim at T = 4 (one calibration window, a short
    prompt), through the compile API. Shared, read-only."""
    from stac.commands.compile import CompileRequest, compile_model
    from stac.frontend import ConversionConfig

    out = tmp_path_factory.mktemp("smollm2-artifact") / "smollm2"
    compile_model(
        CompileRequest(
            model="smollm2-135m",
            target="loihi2-sim",
            output_dir=out,
            prompt="Hello there.",
            conversion=ConversionConfig(timesteps=4, calibration_passages=1),
        )
    )
    return out


@pytest.fixture(scope="session")
def hamlet_ids(smollm2) -> torch.Tensor:
    from stac.frontend.text import play_text

    return smollm2.tokenizer(play_text("tragedies/hamlet"), return_tensors="pt").input_ids[0]


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2) -> Path:
    """A 2-layer, 64-wide Llama with random weights: grouped-query attention (4 heads, 2 KV
    heads), an LM head not tied to the embedding, SmolLM2's tokenizer."""
    path = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(smollm2.tokenizer),
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    smollm2.tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def text_file(tmp_path_factory) -> Path:
    """The first 20,000 characters of The Tempest (a bundled play) as a training text file."""
    from stac.frontend.text import play_text

    path = tmp_path_factory.mktemp("text") / "tempest.txt"
    path.write_text(play_text("romances/the-tempest")[:20_000])
    return path
