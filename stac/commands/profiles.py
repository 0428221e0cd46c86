"""``stac profiles``: every bundled hardware profile with its key figures."""

from __future__ import annotations

import argparse

from stac.reporting.profiles import format_profiles


def run(args: argparse.Namespace) -> int:  # noqa: ARG001 (the command takes no options)
    print("\n".join(format_profiles()))
    return 0


__all__ = ["run"]
