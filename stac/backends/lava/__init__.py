"""The ``lava`` backend and everything it needs, in one package.

Lava-free parts: :mod:`.plan` (spike-driven NIR graphs as integer Dense + LIF layers),
:mod:`.blocks` (a converted transformer's blocks as integers). Lava-facing parts:
:mod:`.backend` (:class:`LavaBackend`, emitting and running Lava processes), :mod:`.host`
(a converted graph's token run, blocks in Lava and host ops in stac), :mod:`.procs` (stac's own
Lava processes and their models; Lava scans that directory for models, so it holds nothing
else) and :mod:`.netx` (lava-dl netx export). Only :mod:`.backend`, :mod:`.procs` and
:mod:`.netx` import Lava, lazily.
"""

from stac.backends.lava.backend import LavaBackend, lava_available

__all__ = ["LavaBackend", "lava_available"]
