"""Backends by name, and the ``--target`` names derived from the hardware profiles.

A target is ``<profile>-<backend>`` for every backend a neuromorphic profile lists that is
registered here (``loihi2-sim``, for example), or the path of a user's own profile file,
optionally followed by ``:<backend>`` (``my-chip.toml`` runs on the first backend the file
lists that is registered; ``my-chip.toml:sim`` names it).
"""

from __future__ import annotations

from pathlib import Path

from stac.backends.base import Backend
from stac.backends.lava import LavaBackend
from stac.backends.sim import SimBackend
from stac.errors import StacError
from stac.ir.capabilities import check_capabilities
from stac.profiles import Profile, is_profile_path, load_profile, load_profile_file, profile_names

BACKENDS: dict[str, Backend] = {"sim": SimBackend(), "lava": LavaBackend()}


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


def _split(target: str) -> tuple[str, str]:
    """``path[:backend]`` -> (path, backend or "")."""
    if ":" in target.rsplit("/", 1)[-1]:
        path, backend = target.rsplit(":", 1)
        return path, backend
    return target, ""


def _resolve_file(target: str, path: str, backend: str) -> tuple[Profile, Backend]:
    profile = check_capabilities(load_profile_file(path))
    if profile.kind != "neuromorphic":
        raise StacError(
            f"profile {path} is a {profile.kind} profile; a target needs a neuromorphic one"
        )
    usable = [b for b in profile.backends if b in BACKENDS]
    if backend:
        if backend not in BACKENDS:
            raise StacError(
                f"unknown backend {backend!r} in target {target!r}; "
                f"known: {', '.join(sorted(BACKENDS))}"
            )
        if backend not in profile.backends:
            raise StacError(
                f"profile {path} does not list backend {backend!r} "
                f"(its field 'backends' is {list(profile.backends)})"
            )
        return profile, BACKENDS[backend]
    if not usable:
        raise StacError(
            f"profile {path} lists no registered backend in its field 'backends' "
            f"(registered: {', '.join(sorted(BACKENDS))})"
        )
    return profile, BACKENDS[usable[0]]


def resolve_target(target: str) -> tuple[Profile, Backend]:
    """The profile and backend a ``--target`` value names (a target name or a profile file)."""
    known = targets()
    if target in known:
        profile_name, backend = known[target]
        return load_profile(profile_name), BACKENDS[backend]
    path, backend = _split(target)
    if is_profile_path(path):
        return _resolve_file(target, path, backend)
    raise StacError(
        f"unknown target {target!r}; valid targets: {', '.join(sorted(known))} "
        f"(or the path of a profile file)"
    )


def target_label(target: str) -> str:
    """A file-name-safe label for a target: the name, or a profile file's stem (+ backend)."""
    path, backend = _split(target)
    if target in targets() or not is_profile_path(path):
        return target
    stem = Path(path).stem
    return f"{stem}-{backend}" if backend else stem


__all__ = ["BACKENDS", "Backend", "resolve_target", "target_label", "targets"]
