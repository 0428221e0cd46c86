"""Limits shared by several stages, in a module of their own so that no stage imports another
for them (the runtime checks T without importing the frontend)."""

from __future__ import annotations

#: The supported range of timesteps per token (T): the conversion's ``timesteps``, a
#: processor's ``T`` and ``stac eval --timesteps`` are all checked against it.
MIN_T, MAX_T = 1, 256
