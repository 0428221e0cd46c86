"""stac's own Lava processes: the graded signed IF encoder of a converted block, and a recorder.

Lava has no multi-threshold neuron with signed integer payloads and a subtractive reset
(its ``LIF`` fires binary spikes and resets to zero; ``Delta`` / ``SigmaDelta`` send the change
of a value above a threshold, not a count of thresholds), so the encoder of a converted block
(:class:`stac.backends.lava.blocks.EncoderBlock`) gets a process and a ``fixed_pt``
``PyLoihiProcessModel`` of its own (the only custom neuron model the backend uses; the
other is :class:`Recorder`, a host-side sink that brings results back). Its model calls
stac's integer rule, :func:`stac.sim.neurons.signed_if_int_update`; on a Loihi 2 chip it would
be a microcode neuron. This module imports Lava at import time: only :mod:`stac.backends.lava`
imports it, lazily.
"""

from stac.backends.lava.procs.models import PyGradedSignedIFModelFixed, PyRecorderModel
from stac.backends.lava.procs.process import GradedSignedIF, Recorder

__all__ = ["GradedSignedIF", "PyGradedSignedIFModelFixed", "PyRecorderModel", "Recorder"]
