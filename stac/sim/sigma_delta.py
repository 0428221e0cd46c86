r"""Bit-accurate step functions of the netx neurons: sigma-delta and Loihi's CUBA LIF.

:func:`sigma_delta_step` follows Lava's fixed-point ``SigmaDelta`` / ``Delta`` / ``Sigma``
process models (``PySigmaDeltaModelFixed``, ``PyDeltaModelFixed``, ``PySigmaModelFixed`` in
lava-nc ``src/lava/proc/sdn/models.py``) operation by operation: every value lives in a numpy
``int32`` there, so every sum here is wrapped to the profile's ``lava.message_bits`` (32), the
threshold test is ``>=`` on the absolute value (Lava's code; its docstring says ``>``), and the
payload is the arithmetic right shift of the sent change by ``state_exp``. The rule is
:class:`stac.ir.nodes.sigma_delta.SigmaDelta`'s docstring.

:func:`cuba_params` maps a :class:`~stac.ir.nodes.loihi_cuba.LoihiCubaLIF` onto the one
bit-accurate LIF stac has, :func:`stac.sim.loihi.lif_fixed_step` (Lava's ``PyLifModelBitAcc``):
Loihi's decay register ``i_decay`` is Lava's ``du + ds_offset``, so it is passed as ``du`` with
an offset of 0.

Pure functions over ``NamedTuple`` state; integers are ``torch.int64`` tensors of any leading
shape (a batch axis is allowed: the parameters broadcast over it).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from stac.ir.nodes.loihi_cuba import LoihiCubaLIF
from stac.ir.nodes.sigma_delta import SigmaDelta
from stac.sim.fixed_point import as_int, shift, wrap_signed
from stac.sim.loihi import LIFFixedParams, lif_params

Tensor = torch.Tensor


class SigmaDeltaParams(NamedTuple):
    bias: Tensor  # bias << (spike_exp + state_exp), per neuron
    vth: int  # vth << (spike_exp + state_exp)
    relu: bool  # ReLU (else identity)
    sigma: bool  # integrate the input
    delta: bool  # send changes (else the activation)
    input_exp: int  # left shift of the input
    state_exp: int  # right shift from a sent change to its payload
    cum_error: bool  # fire on the accumulated error
    bits: int  # width every value wraps to (Lava's int32 arrays)


class SigmaDeltaState(NamedTuple):
    sigma: Tensor  # integrated input
    act: Tensor  # last activation y
    residue: Tensor  # change not yet sent
    error: Tensor  # accumulated error (cum_error only)


def sigma_delta_params(node: SigmaDelta, bits: int) -> SigmaDeltaParams:
    """The node's integers on the state's scale; ``bits``: the profile's
    ``lava.message_bits``."""
    e = node.scale_exp
    bias = wrap_signed(as_int(torch.as_tensor(node.bias)) << e, bits)
    return SigmaDeltaParams(
        bias,
        int(node.vth) << e,
        node.activation == "relu",
        bool(node.sigma),
        bool(node.delta),
        int(node.input_exp),
        int(node.state_exp),
        bool(node.cum_error),
        int(bits),
    )


def sigma_delta_initial_state(shape: Sequence[int]) -> SigmaDeltaState:
    zeros = torch.zeros(tuple(shape), dtype=torch.int64)
    return SigmaDeltaState(zeros, zeros.clone(), zeros.clone(), zeros.clone())


def sigma_delta_step(
    a_in: Tensor, state: SigmaDeltaState, p: SigmaDeltaParams
) -> tuple[Tensor, SigmaDeltaState]:
    """One timestep: (payloads, or the activation for a readout; new state)."""
    w = p.bits
    x = wrap_signed(as_int(a_in) << p.input_exp, w)
    sigma = wrap_signed(state.sigma + x, w) if p.sigma else x
    act = wrap_signed(sigma + p.bias, w)
    if p.relu:
        act = act.clamp_min(0)
    if not p.delta:
        return act, SigmaDeltaState(sigma, act, state.residue, state.error)
    d = wrap_signed(act - state.act + state.residue, w)
    error = state.error
    if p.cum_error:
        error = wrap_signed(error + d, w)
        fire = wrap_signed(error.abs(), w) >= p.vth
        error = torch.where(fire & (d != 0), torch.zeros_like(error), error)
    else:
        fire = wrap_signed(d.abs(), w) >= p.vth
    sent = torch.where(fire, d, torch.zeros_like(d))
    residue = wrap_signed(d - sent, w)
    return shift(sent, -p.state_exp), SigmaDeltaState(sigma, act, residue, error)


def cuba_params(node: LoihiCubaLIF) -> LIFFixedParams:
    """``node`` as the parameters of :func:`stac.sim.loihi.lif_fixed_step`."""
    return lif_params(
        du=node.i_decay,
        dv=node.v_decay,
        vth=int(node.vth),
        bias_mant=torch.as_tensor(node.bias_mant),
        bias_exp=int(node.bias_exp),
        ds_offset=0,
        dm_offset=0,
    )


__all__ = [
    "SigmaDeltaParams",
    "SigmaDeltaState",
    "cuba_params",
    "sigma_delta_initial_state",
    "sigma_delta_params",
    "sigma_delta_step",
]
