"""``stac targets``: every valid ``--target`` name with its profile and backend."""

from __future__ import annotations

import argparse

from stac.backends import targets


def run(args: argparse.Namespace) -> int:  # noqa: ARG001 (the command takes no options)
    for name, (profile, backend) in sorted(targets().items()):
        print(f"{name:<20} profile {profile}, backend {backend}")
    return 0


__all__ = ["run"]
