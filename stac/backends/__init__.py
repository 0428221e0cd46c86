"""Backends by name, and the ``--target`` names derived from the hardware profiles.

A target is ``<profile>-<backend>`` for every backend a neuromorphic profile lists that is
registered here (``loihi2-sim``, for example).
"""

from __future__ import annotations

from stac.backends.base import Backend
from stac.backends.sim import SimBackend
from stac.errors import StacError
from stac.profiles import Profile, load_profile, profile_names

BACKENDS: dict[str, Backend] = {"sim": SimBackend()}


def targets() -> dict[str, tuple[str, str]]:
    """Every valid target name -> (profile name, backend name)."""
    out = {}
    for name in profile_names():
        profile = load_profile(name)
        if profile.kind != "neuromorphic":
            continue
        for backend in profile.backends:
            if backend in BACKENDS:
                out[f"{profile.name}-{backend}"] = (profile.name, backend)
    return out


def resolve_target(target: str) -> tuple[Profile, Backend]:
    known = targets()
    if target not in known:
        raise StacError(f"unknown target {target!r}; valid targets: {', '.join(sorted(known))}")
    profile_name, backend = known[target]
    return load_profile(profile_name), BACKENDS[backend]


__all__ = ["BACKENDS", "Backend", "resolve_target", "targets"]
