"""stac's own Lava process: the graded signed IF encoder of a converted block.

Lava has no multi-threshold neuron with signed integer payloads and a subtractive reset
(its ``LIF`` fires binary spikes and resets to zero; ``Delta`` / ``SigmaDelta`` send the change
of a value above a threshold, not a count of thresholds), so the encoder of a converted block
(:class:`stac.backends.loihi_blocks.EncoderBlock`) gets a process and a ``fixed_pt``
``PyLoihiProcessModel`` of its own, the only custom model the backend uses. It follows
:func:`stac.sim.fixed_point.signed_if_fixed_step` step for step; on a Loihi 2 chip it would be a
microcode neuron. This module imports Lava at import time: only :mod:`stac.backends.lava`
imports it, lazily.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class GradedSignedIF(AbstractProcess):
    """Signed integrate-and-fire with graded payloads, reset every ``reset_interval`` steps.

    Per step: ``v <- clip(v + a_in, -v_max, v_max)``;
    ``s = clip(floor((2 v + theta) / (2 theta)), -max_payload, max_payload)``;
    ``v <- v - s theta``; send ``s * mult``. ``v`` is set to 0 before the first step of every
    interval (one token of T steps). ``v_out`` sends ``v`` after each step, so that a Monitor
    can read the potential through a port (probing the Var itself costs a request per step,
    tens of times slower).
    """

    def __init__(self, *, shape: tuple[int, ...], theta: int, mult: np.ndarray,
                 max_payload: int, reset_interval: int, v_max: int,
                 name: str | None = None) -> None:
        super().__init__(shape=shape, theta=int(theta), max_payload=int(max_payload),
                         reset_interval=int(reset_interval), v_max=int(v_max), name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.v_out = OutPort(shape=shape)
        self.v = Var(shape=shape, init=0)
        self.mult = Var(shape=shape, init=np.asarray(mult))


@implements(proc=GradedSignedIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyGradedSignedIFModelFixed(PyLoihiProcessModel):
    """Bit-accurate model: integers held in int64 while computing, sent as int32 payloads."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=32)
    v_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    mult: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=32)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self.theta = int(proc_params["theta"])
        self.max_payload = int(proc_params["max_payload"])
        self.reset_interval = int(proc_params["reset_interval"])
        self.v_max = int(proc_params["v_max"])

    def run_spk(self) -> None:
        x = self.a_in.recv().astype(np.int64)
        v = self.v.astype(np.int64)
        if (self.time_step - 1) % self.reset_interval == 0:
            v = np.zeros_like(v)
        v = np.clip(v + x, -self.v_max, self.v_max)
        s = np.clip(np.floor_divide(2 * v + self.theta, 2 * self.theta),
                    -self.max_payload, self.max_payload)
        self.v[:] = v - s * self.theta
        self.v_out.send(self.v)
        payload = s * self.mult.astype(np.int64)
        self.s_out.send(((payload + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32))


class Recorder(AbstractProcess):
    """A host-side sink: records its input every step and, after step ``steps``, writes all of
    it to ``path`` (``.npy``, int64 ``[steps, *shape]``).

    Lava's ``Monitor`` returns its data through ``Var.get``, which sends one message per
    element: reading 129 steps of 960 values took 4.8 s, against 0.7 s for the run itself.
    """

    def __init__(self, *, shape: tuple[int, ...], steps: int, path: str) -> None:
        super().__init__(shape=shape, steps=int(steps), path=str(path))
        self.a_in = InPort(shape=shape)


@implements(proc=Recorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyRecorderModel(PyLoihiProcessModel):
    """Buffers what arrives; saves it at the last step."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=32)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self.steps = int(proc_params["steps"])
        self.path = str(proc_params["path"])
        self.buffer = np.zeros((self.steps, *proc_params["shape"]), dtype=np.int64)

    def run_spk(self) -> None:
        data = self.a_in.recv()
        if self.time_step <= self.steps:
            self.buffer[self.time_step - 1] = data
        if self.time_step == self.steps:
            np.save(self.path, self.buffer)


__all__ = ["GradedSignedIF", "PyGradedSignedIFModelFixed", "PyRecorderModel", "Recorder"]
