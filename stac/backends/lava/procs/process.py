"""stac's own Lava processes (see :mod:`stac.backends.lava.procs`)."""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

from stac.backends.lava.blocks import PART_PORTS


class GradedSignedIF(AbstractProcess):
    """Signed integrate-and-fire with graded payloads, reset every ``reset_interval`` steps.

    Per step: ``v <- clip(v + a_in, -v_max, v_max)``;
    ``s = clip(floor((2 v + theta) / (2 theta)), -max_payload, max_payload)``;
    ``v <- v - s theta``; send ``s * mult``, or, with ``parts`` > 1, its base-``2**split_bits``
    digits (:func:`stac.backends.lava.blocks.split_payload`) on ``s_out``, ``s_out1``, ... (so
    that each readout fits Lava's 32 bits). ``v`` is set to 0
    before the first step of every
    interval (one token of T steps). ``v_out`` sends ``v`` after each step, so that a Monitor
    can read the potential through a port (probing the Var itself costs a request per step,
    tens of times slower). ``dead`` (optional, integers per neuron): a potential with
    ``|v| < dead`` emits nothing (stac's dead zone, :func:`stac.sim.neurons.dead_zone_levels`;
    1 everywhere is no dead zone).
    """

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        theta: int,
        mult: np.ndarray,
        max_payload: int,
        reset_interval: int,
        v_max: int,
        split_bits: int = 0,
        parts: int = 1,
        dead: np.ndarray | None = None,
        name: str | None = None,
    ) -> None:
        if not 1 <= parts <= len(PART_PORTS):
            raise ValueError(f"parts must be in 1..{len(PART_PORTS)}, got {parts}")
        super().__init__(
            shape=shape,
            theta=int(theta),
            max_payload=int(max_payload),
            reset_interval=int(reset_interval),
            v_max=int(v_max),
            split_bits=int(split_bits),
            parts=int(parts),
            name=name,
        )
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.s_out1 = OutPort(shape=shape)
        self.s_out2 = OutPort(shape=shape)
        self.s_out3 = OutPort(shape=shape)
        self.v_out = OutPort(shape=shape)
        self.v = Var(shape=shape, init=0)
        self.mult = Var(shape=shape, init=np.asarray(mult))
        self.dead = Var(shape=shape, init=np.ones(shape, np.int64) if dead is None else dead)


class Recorder(AbstractProcess):
    """A host-side sink: records its input every step and, after step ``steps``, writes all of
    it to ``path`` (``.npy``, int64 ``[steps, *shape]``).

    Lava's ``Monitor`` returns its data through ``Var.get``, which sends one message per
    element: reading 129 steps of 960 values took 4.8 s, against 0.7 s for the run itself.
    """

    def __init__(self, *, shape: tuple[int, ...], steps: int, path: str) -> None:
        super().__init__(shape=shape, steps=int(steps), path=str(path))
        self.a_in = InPort(shape=shape)


__all__ = ["GradedSignedIF", "Recorder"]
