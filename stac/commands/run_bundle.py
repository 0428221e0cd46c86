"""``stac run-bundle DIR --prompt ...``: greedy generation from a bundle alone (onnxruntime for
the host parts, stac's step functions for the chip parts)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stac.errors import StacError


def _tokenizer(bundle: Path):  # -> tokenizers.Tokenizer
    path = bundle / "tokenizer" / "tokenizer.json"
    if not path.is_file():
        raise StacError(f"bundle {bundle} has no tokenizer/tokenizer.json")
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def run(args: argparse.Namespace) -> int:
    from stac.bundle.runner import Bundle, generate

    bundle = Bundle(args.bundle)
    tok = _tokenizer(Path(args.bundle))
    ids = tok.encode(args.prompt).ids
    new, _ = generate(bundle, ids, args.max_new_tokens)
    print(tok.decode(new))
    return 0


__all__ = ["run"]
