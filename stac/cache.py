"""On-disk cache of what the points of a sweep share: calibration statistics and GPTQ weights.

A full-mode conversion spends most of its time on passes of the float model over the
calibration text (per-channel statistics, the threshold search, ``X^T X`` for GPTQ) and on the
GPTQ rounding itself. Of these only the threshold search depends on T and the payload bits;
the statistics depend on the model and the text alone, and the GPTQ weights on the model, the
text and the weight bits. :func:`caching` turns the cache on for the conversions run inside
it; :func:`stac.frontend.convert.convert` then looks each result up before computing it.

Layout: ``<root>/<kind>-<sha256>.safetensors`` (the tensors) beside ``<kind>-<sha256>.json``
(what the key was made of, for a person reading the directory). The key is the SHA-256 of a
canonical JSON document of the inputs: the model's fingerprint (the SHA-256 of every tensor
of its state dict, with names, dtypes and shapes), the calibration token ids' fingerprint,
the options that matter for that kind, and :data:`CACHE_VERSION`. File names are hex digests
only; nothing is ever unpickled (safetensors and JSON). Files are written to a temporary name
and renamed, so concurrent workers never read a half-written entry.

The default root is ``$STAC_CACHE/calibration`` (``~/.cache/stac/calibration``); ``stac
explore --cache-dir`` chooses another.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch

from stac.errors import StacError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Bumped whenever what a cached entry holds (or how it is computed) changes.
CACHE_VERSION = 1

_ACTIVE: contextvars.ContextVar[Cache | None] = contextvars.ContextVar("stac_cache", default=None)


def default_root() -> Path:
    from stac.frontend.models import cache_dir

    return cache_dir() / "calibration"


def fingerprint_tensors(tensors: Any) -> str:
    """SHA-256 of named tensors (a mapping) or a sequence of tensors: names, dtypes, shapes and
    bytes, in order."""
    h = hashlib.sha256()
    items = tensors.items() if hasattr(tensors, "items") else enumerate(tensors)
    for name, t in items:
        t = t.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def fingerprint_model(model: torch.nn.Module) -> str:
    """SHA-256 of the model's state dict (every parameter and buffer)."""
    return fingerprint_tensors(model.state_dict())


class Cache:
    """A directory of safetensors entries keyed by the SHA-256 of their inputs."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(kind: str, parts: dict[str, Any]) -> str:
        doc = json.dumps(
            {"kind": kind, "version": CACHE_VERSION, **parts}, sort_keys=True, default=str
        )
        return hashlib.sha256(doc.encode()).hexdigest()

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        if not kind.isidentifier() or len(key) != 64 or set(key) - set("0123456789abcdef"):
            raise StacError(f"cache entry name {kind!r}/{key!r} is not a kind and a SHA-256 digest")
        return self.root / f"{kind}-{key}{suffix}"

    def load(self, kind: str, parts: dict[str, Any]) -> dict[str, torch.Tensor] | None:
        """The tensors stored under ``kind`` and ``parts``, or None (a miss)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self._path(kind, self.key(kind, parts), ".safetensors")
        if not path.is_file():
            self.misses += 1
            return None
        try:
            out = load_file(path)
        except (OSError, SafetensorError) as exc:
            log.warning("cache entry %s is unreadable (%s); recomputing it", path, exc)
            self.misses += 1
            return None
        self.hits += 1
        log.info("cache hit: %s", path.name)
        return out

    def save(self, kind: str, parts: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Store ``tensors`` under ``kind`` and ``parts`` (atomically)."""
        from safetensors.torch import save_file

        key = self.key(kind, parts)
        self.root.mkdir(parents=True, exist_ok=True)
        doc = json.dumps(parts, indent=1, sort_keys=True, default=str)
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        for suffix, write in (
            (".json", lambda p: Path(p).write_text(doc)),
            (".safetensors", lambda p: save_file(tensors, p)),
        ):
            final = self._path(kind, key, suffix)
            fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", dir=self.root)
            os.close(fd)
            try:
                write(tmp)
                os.replace(tmp, final)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)


def cached(
    kind: str,
    parts: dict[str, Any] | None,
    compute: Callable[[], T],
    encode: Callable[[T], dict[str, torch.Tensor]],
    decode: Callable[[dict[str, torch.Tensor]], T],
) -> T:
    """``compute()``, looked up first in the active cache (when there is one and ``parts`` is
    given) and stored there after."""
    cache = active()
    if cache is None or parts is None:
        return compute()
    found = cache.load(kind, parts)
    if found is not None:
        return decode(found)
    value = compute()
    cache.save(kind, parts, encode(value))
    return value


@contextlib.contextmanager
def caching(root: str | Path | None = None) -> Iterator[Cache]:
    """Conversions run inside this block read and write the cache at ``root`` (default
    :func:`default_root`)."""
    cache = Cache(default_root() if root is None else root)
    token = _ACTIVE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)


def active() -> Cache | None:
    """The cache of the enclosing :func:`caching` block, or None."""
    return _ACTIVE.get()


__all__ = [
    "CACHE_VERSION",
    "Cache",
    "active",
    "cached",
    "caching",
    "default_root",
    "fingerprint_model",
    "fingerprint_tensors",
]
