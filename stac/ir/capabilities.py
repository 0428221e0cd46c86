"""The node type names a hardware profile's ``[ops]`` and ``[capabilities]`` tables may name,
checked against the IR.

A profile is data and knows no IR classes: :mod:`stac.profiles` checks the shape of each
``[ops]`` row (``run``, ``units``, ``source``); the names themselves are checked here, where
the node types are known, before a profile is used as a target or by the passes.
"""

from __future__ import annotations

import nir

from stac.errors import StacError
from stac.ir.nodes import stac_node_types
from stac.profiles import Profile


def known_capabilities() -> tuple[str, ...]:
    """Node type names an ``[ops]`` table may name: NIR's node classes and stac's own."""
    nir_types = {
        n
        for n, v in vars(nir).items()
        if isinstance(v, type) and issubclass(v, nir.NIRNode) and v is not nir.NIRNode
    }
    return tuple(sorted(nir_types | set(stac_node_types()) - {"Input", "Output", "NIRGraph"}))


def check_capabilities(profile: Profile) -> Profile:
    """``profile`` itself when every op its ``[ops]`` table names is a node type; otherwise a
    StacError naming the profile file and the first unknown name."""
    known = known_capabilities()
    for section, names in (("ops", profile.ops), ("capabilities", profile.capabilities)):
        for op in names:
            if op not in known:
                raise StacError(
                    f"hardware profile {profile.path}: unknown capability {op!r} in "
                    f"[{section}] (known: {', '.join(known)})"
                )
    return profile


__all__ = ["check_capabilities", "known_capabilities"]
