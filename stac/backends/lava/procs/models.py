"""``fixed_pt`` ProcessModels of stac's Lava processes (see :mod:`stac.backends.lava.procs`).

Lava finds a Process's models by importing the modules beside it, so this directory holds
nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from stac.backends.lava.blocks import split_payload
from stac.backends.lava.procs.process import GradedSignedIF, Recorder
from stac.sim.neurons import signed_if_int_update


@implements(proc=GradedSignedIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyGradedSignedIFModelFixed(PyLoihiProcessModel):
    """Bit-accurate model: stac's integer signed IF rule
    (:func:`stac.sim.neurons.signed_if_int_update`) on int64 numpy arrays, payloads split
    as :func:`stac.backends.lava.blocks.split_payload` and sent as int32. The widths are the
    profile's (``v_max`` arrives as a parameter); Lava's ``precision`` annotation is left out,
    as Lava's Python runtime only stores it."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)
    s_out1: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)
    s_out2: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)
    s_out3: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)
    v_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32)
    mult: np.ndarray = LavaPyType(np.ndarray, np.int32)
    dead: np.ndarray = LavaPyType(np.ndarray, np.int32)

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self.theta = int(proc_params["theta"])
        self.max_payload = int(proc_params["max_payload"])
        self.reset_interval = int(proc_params["reset_interval"])
        self.v_max = int(proc_params["v_max"])
        self.split_bits = int(proc_params["split_bits"])
        self.parts = int(proc_params["parts"])

    def run_spk(self) -> None:
        x = self.a_in.recv().astype(np.int64)
        v = self.v.astype(np.int64)
        if (self.time_step - 1) % self.reset_interval == 0:
            v = np.zeros_like(v)
        dead = self.dead.astype(np.int64)
        s, v = signed_if_int_update(v, x, self.theta, self.v_max, self.max_payload, dead)
        self.v[:] = v
        self.v_out.send(self.v)
        parts = split_payload(s * self.mult.astype(np.int64), self.split_bits, self.parts)
        for j, port in enumerate((self.s_out, self.s_out1, self.s_out2, self.s_out3)):
            part = parts[j] if j < self.parts else np.zeros_like(s)  # unused port: zeros
            port.send(((part + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32))


@implements(proc=Recorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyRecorderModel(PyLoihiProcessModel):
    """Buffers what arrives; saves it at the last step."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)

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


__all__ = ["PyGradedSignedIFModelFixed", "PyRecorderModel"]
