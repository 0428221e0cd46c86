"""Reading lava-dl netx HDF5 files (``.net``, what lava-dl slayer's ``export_hdf5`` writes)
into stac IR, the way lava-dl 0.6.0's ``netx.hdf5.Network`` reads them.

A netx file is a chain of numbered layers under ``layer/``. Each becomes IR nodes:

==========  ======================================================================
``input``   ``nir.Input`` (CHW or (n,)); its neuron, if any, after it
``conv``    ``nir.Conv2d`` (the file's (out, in, kh, kw) kernel, zero bias), then its neuron
``pool``    ``nir.SumPool2d`` when the pool weight is 1, else the depthwise ``nir.Conv2d``
            the synapse computes (every tap the pool weight); then its neuron
``flatten`` ``nir.Flatten`` over the whole (C, H, W) (netx flattens in that order)
``dense``   ``nir.Linear`` (the file's integer weights), then its neuron (netx's
            non-leaky integrator when the file gives none)
==========  ======================================================================

Neurons: ``CUBA`` (and its alias ``LOIHI``) -> :class:`~stac.ir.nodes.LoihiCubaLIF` with
Loihi's integers as stored (``iDecay``, ``vDecay``, ``vThMant``, the layer's ``bias`` at the
exponent netx reads every bias at); ``SDNN`` -> :class:`~stac.ir.nodes.SigmaDelta`: netx's
Delta encoder for the input layer, Sigma readout for a layer with ``sigma_output``, a ReLU
sigma-delta neuron otherwise. A layer's bias belongs to its neuron (netx gives it to the
neuron, not the synapse). Weights are stored as float arrays of the file's integers, each
node's ``metadata["quant"]`` saying so (``scheme`` ``"netx"``), and each node's
``metadata["netx"]`` keeps what netx derives (a dense layer's ``weight_exp`` and
``num_weight_bits``, each neuron's message bits). Lava's Dense and Conv deliver one step late;
``graph.metadata["netx"]["synapse_delay_steps"]`` records it for executors.

Anything netx would run differently from the file, or cannot run, is refused with one
:class:`StacError` that names every such layer; a malformed file is one StacError naming the
layer and field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nir
import numpy as np

from stac.errors import StacError
from stac.ir.graph import VerifyError, make_graph, verify
from stac.ir.netx_io.fields import NETX_SPIKE_EXP, NetxContext, fail, text
from stac.ir.netx_io.layers import build_layer, unsupported
from stac.profiles import Profile


def _layers(path: Path, f: Any) -> list[tuple[int, str, Any]]:
    """(index, type, group) of every layer, in order; the keys must be 0..n-1."""
    import h5py

    group = f.get("layer")
    if not isinstance(group, h5py.Group):
        raise fail(path, "is HDF5 but not a netx network (no 'layer' group)")
    keys = sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else -1)
    if not keys:
        raise fail(path, "has no layers")
    if keys != [str(i) for i in range(len(keys))]:
        raise fail(path, f"layer names must be 0..{len(keys) - 1}, got {sorted(group.keys())}")
    out = []
    for key in keys:
        g = group[key]
        if not isinstance(g, h5py.Group) or "type" not in g:
            raise fail(path, f"layer {key} has no 'type' field")
        out.append((int(key), text(g["type"]), g))
    return out


def read_netx(path: str | Path, profile: Profile, spike_exp: int = NETX_SPIKE_EXP) -> nir.NIRGraph:
    """Read a netx ``.net`` file into a checked stac IR graph.

    ``profile`` gives what netx assumes of the chip: the synapse width (``chip.weight_bits``)
    and the exponent netx reads every CUBA bias at (``lava.netx_bias_exp``). ``spike_exp`` is
    ``netx.hdf5.Network``'s argument of that name. Every problem becomes one StacError.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise fail(path, "does not exist or is not a file")
    lava = profile.values.get("lava") or {}
    if "netx_bias_exp" not in lava:
        raise StacError(
            f"hardware profile {profile.name} ({profile.path}) has no field "
            "'lava.netx_bias_exp', the exponent netx reads biases at"
        )
    ctx = NetxContext(
        path=path,
        weight_bits=int(profile.get("chip", "weight_bits")),
        bias_exp=int(lava["netx_bias_exp"]),
        spike_exp=int(spike_exp),
    )
    try:
        if not h5py.is_hdf5(path):
            raise fail(path, "is not an HDF5 file (netx files are HDF5)")
        with h5py.File(path, "r") as f:
            layers = _layers(path, f)
            problems = [p for i, t, g in layers for p in unsupported(i, t, g)]
            if problems:
                raise fail(
                    path,
                    f"stac cannot import {'; '.join(problems)} (stac reads input, "
                    "dense, conv, pool and flatten layers with CUBA or SDNN "
                    "neurons, as lava-dl's netx runs them)",
                )
            for i, ltype, g in layers:
                _build(ctx, i, ltype, g, layers)
    except StacError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear line
        raise fail(path, f"cannot be read ({type(exc).__name__}: {exc})") from None
    return _finish(ctx)


def _build(ctx: NetxContext, i: int, ltype: str, g: Any, layers: list) -> None:
    where = f"layer {i} ({ltype})"
    if ltype == "input" and i != 0:
        raise fail(ctx.path, f"{where}: an input layer must come first")
    if ctx.flatten_pending and ltype != "dense":
        raise fail(
            ctx.path,
            f"{where}: follows a flatten layer, which netx applies only before a dense layer",
        )
    try:
        build_layer(ctx, i, ltype, g)
    except StacError:
        raise
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        msg = str(exc)
        if isinstance(exc, KeyError):  # h5py names the field inside its own sentence
            found = re.search(r"object '([^']+)' doesn't exist", str(exc.args[0]))
            msg = f"missing field {found.group(1) if found else exc.args[0]!r}"
        raise fail(ctx.path, f"{where}: {msg}") from None
    if i == len(layers) - 1 and ctx.flatten_pending:
        raise fail(ctx.path, f"{where}: the network ends in a flatten layer")


def _finish(ctx: NetxContext) -> nir.NIRGraph:
    if ctx.prev is None or ctx.shape is None:
        raise fail(ctx.path, "has no layer stac can run (only an input shape)")
    ctx.nodes["output"] = nir.Output(output_type={"output": np.array(ctx.shape)})
    ctx.edges.append((ctx.prev, "output"))
    metadata = {
        "source": f"netx:{ctx.path.name}",
        "netx": {
            "spike_exp": ctx.spike_exp,
            "state_exp": ctx.state_exp,
            "bias_exp": ctx.bias_exp,
            "input_message_bits": 0,
            "synapse_delay_steps": 1,
        },
    }
    graph = make_graph(ctx.nodes, ctx.edges, metadata)
    try:
        return verify(graph, "netx import")
    except VerifyError as exc:
        raise fail(ctx.path, str(exc)) from None


__all__ = ["read_netx"]
