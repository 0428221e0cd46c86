"""netx neurons: which stac reads (:func:`neuron_problems` names the rest) and the IR node each
becomes (:func:`add_neuron`): ``CUBA`` / ``LOIHI`` -> LoihiCubaLIF, ``SDNN`` -> SigmaDelta in
one of netx's three roles (input encoder, hidden neuron, ``sigma_output`` readout)."""

from __future__ import annotations

from typing import Any

import numpy as np

from stac.ir.netx_io.fields import (
    CUBA_TYPES,
    NETX_MESSAGE_BITS,
    NEURON_TYPES,
    NetxContext,
    one_int,
    text,
)
from stac.ir.nodes.loihi_cuba import LoihiCubaLIF
from stac.ir.nodes.sigma_delta import SigmaDelta


def neuron_problems(where: str, ltype: str, neuron: Any) -> list[str]:
    """What netx would run differently from this neuron's file fields (phrases), or []."""
    out: list[str] = []
    ntype = text(neuron["type"]) if "type" in neuron else "<none>"
    if ntype not in NEURON_TYPES:
        return [f"{where}: neuron type {ntype!r}"]
    if ntype in CUBA_TYPES:
        if "gradedSpike" in neuron and one_int(neuron["gradedSpike"], "gradedSpike"):
            out.append(f"{where}: graded CUBA spikes (netx's LIF sends binary ones)")
        if "refDelay" in neuron and one_int(neuron["refDelay"], "refDelay") > 1:
            out.append(
                f"{where}: refractory delay {one_int(neuron['refDelay'], 'refDelay')} "
                "(netx's LIF has none)"
            )
    elif ltype != "input" and "sigma_output" not in neuron:
        act = text(neuron["activation"]) if "activation" in neuron else "relu"
        if act != "relu":
            out.append(f"{where}: SDNN activation {act!r} (netx runs ReLU)")
    return out


def add_neuron(ctx: NetxContext, i: int, ng: Any, bias: np.ndarray | None, role: str) -> None:
    """Add layer ``i``'s neuron (netx field group ``ng``) after the synapse just added."""
    assert ctx.shape is not None
    shape = ctx.shape

    def get(key: str, default: int | None = None) -> int:
        if key not in ng:
            if default is None:
                raise KeyError(f"neuron/{key}")
            return default
        return one_int(ng[key], f"neuron/{key}")

    ntype = text(ng["type"])
    zeros = np.zeros(shape, np.int64)
    meta: dict[str, Any] = {"layer": i, "neuron": ntype, "role": role}
    node: Any
    if ntype in CUBA_TYPES:
        bits = get("messageBits", NETX_MESSAGE_BITS["CUBA"])
        meta["refDelay"] = get("refDelay", 1)
        node = LoihiCubaLIF(
            bias if bias is not None else zeros,
            i_decay=get("iDecay"),
            v_decay=get("vDecay"),
            vth=get("vThMant"),
            bias_exp=ctx.bias_exp,
            metadata={},
        )
        kind = "cuba"
    else:
        bits = get("messageBits", NETX_MESSAGE_BITS["SDNN"])
        if "activation" in ng:
            meta["activation"] = text(ng["activation"])
        if role == "input":
            node = SigmaDelta(
                zeros,
                vth=get("vThMant"),
                activation="identity",
                sigma=False,
                input_exp=ctx.spike_exp + ctx.state_exp,
                spike_exp=ctx.spike_exp,
                state_exp=ctx.state_exp,
            )
        elif "sigma_output" in ng:
            role = meta["role"] = "readout"
            if bias is not None:
                raise ValueError("a sigma_output layer has a bias, which netx's Sigma cannot take")
            node = SigmaDelta(zeros, activation="identity", delta=False)
        else:
            node = SigmaDelta(
                bias if bias is not None else zeros,
                vth=get("vThMant"),
                spike_exp=ctx.spike_exp,
                state_exp=ctx.state_exp,
            )
        kind = "sdnn"
    meta["message_bits"] = bits
    node.metadata.update(
        netx=meta, quant={"scheme": "netx", "status": "integers from the netx file"}
    )
    ctx.add(f"layer{i}_{kind}", node, shape)
    ctx.bits = bits


__all__ = ["add_neuron", "neuron_problems"]
