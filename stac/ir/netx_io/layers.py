"""The netx layer types stac reads: one builder per layer type (the table :data:`BUILDERS`),
and :func:`unsupported`, which names what stac (or netx) cannot run.

Field names and defaults are lava-dl 0.6.0's (``src/lava/lib/dl/netx/hdf5.py``,
``Network.create_*`` and ``get_neuron_params``); shapes are stored CHW, as torch and the file
hold them (netx turns them into Lava's WHC and back, which changes no value).
"""

from __future__ import annotations

from typing import Any, Callable

import nir
import numpy as np

from stac.ir.netx_io.fields import NETX_INTEGRATOR, NetxContext, fail, ints, one_int, pair
from stac.ir.netx_io.neurons import add_neuron, neuron_problems
from stac.ir.netx_io.weights import netx_weight_fit


def unsupported(i: int, ltype: str, g: Any) -> list[str]:
    """What in layer ``i`` stac cannot import (each a phrase naming the layer), or []."""
    where = f"layer {i} ({ltype})"
    if ltype not in BUILDERS:
        return [f"{where}: layer type {ltype!r}"]
    out = []
    if "delay" in g:
        out.append(f"{where}: axonal delays")
    if "weight" in g and not hasattr(g["weight"], "shape"):
        out.append(f"{where}: complex weights")
    if "neuron" in g:
        out.extend(neuron_problems(where, ltype, g["neuron"]))
    return out


# --- builders -----------------------------------------------------------------------------


def _shape(g: Any) -> tuple[int, ...]:
    shape = tuple(int(v) for v in ints(g["shape"], "shape").reshape(-1))
    if not shape or min(shape) < 1:
        raise ValueError(f"shape {list(shape)} is not a shape")
    return shape


def _check_shape(g: Any, got: tuple[int, ...]) -> None:
    if "shape" in g and _shape(g) != got:
        raise ValueError(
            f"the file gives shape {list(_shape(g))}, the layer's geometry gives {list(got)}"
        )


def _chw(ctx: NetxContext) -> tuple[int, int, int]:
    if ctx.shape is None or len(ctx.shape) != 3:
        raise ValueError(f"needs a (channels, height, width) input, got {ctx.shape}")
    return ctx.shape[0], ctx.shape[1], ctx.shape[2]


def _window_out(
    hw: tuple[int, int],
    k: tuple[int, int],
    s: tuple[int, int],
    p: tuple[int, int],
    d: tuple[int, int],
) -> tuple[int, int]:
    out = tuple(
        (x + 2 * pp - dd * (kk - 1) - 1) // ss + 1
        for x, kk, ss, pp, dd in zip(hw, k, s, p, d, strict=True)
    )
    if min(s) < 1 or min(d) < 1 or min(p) < 0 or min(out) < 1:
        raise ValueError(
            f"kernel {k}, stride {s}, padding {p}, dilation {d} do not fit a {hw} input"
        )
    return int(out[0]), int(out[1])


def _weight_meta(
    ctx: NetxContext, i: int, ltype: str, w: np.ndarray, **netx: Any
) -> dict[str, Any]:
    """``quant`` (the file's integers on a power-of-two grid of the profile's weight bits,
    per output row, as the quantise pass reads it) and ``netx`` (what netx derives)."""
    bits, top = ctx.weight_bits, (1 << (ctx.weight_bits - 1)) - 1
    k, m = 0, int(np.abs(w).max()) if w.size else 0
    while (m >> k) > top and not np.any(w % (1 << (k + 1))):
        k += 1
    need = bits if (m >> k) <= top else int(m >> k).bit_length() + 1
    quant = {
        "scheme": "netx",
        "bits": need,
        "scale": np.full(w.shape[0], 2.0**k, np.float32),
        "rel_rms": 0.0,
        "max_abs": 0.0,
        "sqnr_db": None,
        "status": "integers from the netx file",
    }
    return {
        "quant": quant,
        "netx": {"layer": i, "type": ltype, "input_message_bits": ctx.bits, **netx},
    }


def _bias(g: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """The layer's bias per neuron: stored per neuron, per channel (axis 0) or as one value."""
    if "bias" not in g:
        return None
    b = ints(g["bias"], "bias")
    if b.shape == shape:
        return b
    if b.size == 1 or (b.ndim == 1 and b.shape[0] == shape[0]):
        return np.broadcast_to(b.reshape(-1, *[1] * (len(shape) - 1)), shape).copy()
    raise ValueError(
        f"bias of shape {list(b.shape)} fits neither the layer's {list(shape)} "
        f"nor its {shape[0]} channels"
    )


def _input(ctx: NetxContext, i: int, g: Any) -> None:
    shape = _shape(g)
    if len(shape) not in (1, 3):
        raise ValueError(f"shape {list(shape)}: netx inputs are (n,) or (C, H, W)")
    meta: dict[str, Any] = {"layer": i, "type": "input"}
    ignored = [k for k in ("weight", "bias") if k in g]
    if ignored:  # netx keeps them as Input.transform and never applies them
        meta["unapplied_transform"] = {k: ints(g[k], k).tolist() for k in ignored}
    ctx.add(
        "input", nir.Input(input_type={"input": np.array(shape)}, metadata={"netx": meta}), shape
    )
    ctx.bits = 0
    if "neuron" in g:
        add_neuron(ctx, i, g["neuron"], None, "input")


def _conv(ctx: NetxContext, i: int, g: Any) -> None:
    c, h, w = _chw(ctx)
    weight = ints(g["weight"], "weight")
    if weight.ndim != 4:
        raise ValueError(f"weight must be (out, in / groups, kh, kw), got {list(weight.shape)}")
    groups = one_int(g["groups"], "groups")
    if groups < 1 or weight.shape[1] * groups != c or weight.shape[0] % groups:
        raise ValueError(
            f"weight {list(weight.shape)} with groups={groups} does not take the "
            f"input's {c} channels"
        )
    stride, padding, dilation = pair(g, "stride"), pair(g, "padding"), pair(g, "dilation")
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    out = (int(weight.shape[0]), *_window_out((h, w), kernel, stride, padding, dilation))
    _check_shape(g, out)
    node = nir.Conv2d(
        input_shape=(h, w),
        weight=weight.astype(np.float32),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=np.zeros(weight.shape[0], np.float32),
        metadata=_weight_meta(ctx, i, "conv", weight),
    )
    node.input_type = {"input": np.array((c, h, w))}  # NIR takes channels from the kernel alone
    ctx.add(f"layer{i}_conv", node, out)
    add_neuron(ctx, i, g["neuron"], _bias(g, out), "hidden")


def _pool(ctx: NetxContext, i: int, g: Any) -> None:
    c, h, w = _chw(ctx)
    weight = ints(g["weight"], "weight").reshape(-1)
    if weight.size == 0 or np.any(weight != weight[0]):
        raise ValueError("a pool has one weight; the file gives different values")
    kernel, stride, padding = pair(g, "kernelSize"), pair(g, "stride"), pair(g, "padding")
    if "dilation" in g and pair(g, "dilation") != (1, 1):
        raise ValueError(f"dilation {pair(g, 'dilation')}: stac pools are not dilated")
    out = (c, *_window_out((h, w), kernel, stride, padding, (1, 1)))
    _check_shape(g, out)
    value = int(weight[0])
    meta = _weight_meta(ctx, i, "pool", np.full((c, 1), value))
    node: Any
    if value == 1:
        node = nir.SumPool2d(
            kernel_size=np.array(kernel),
            stride=np.array(stride),
            padding=np.array(padding),
            metadata=meta,
        )
        node.input_type, node.output_type = (
            {"input": np.array((c, h, w))},
            {"output": np.array(out)},
        )
    else:  # the synapse a pool is: a depthwise kernel with the pool's one weight
        node = nir.Conv2d(
            input_shape=(h, w),
            weight=np.full((c, 1, *kernel), value, np.float32),
            stride=stride,
            padding=padding,
            dilation=1,
            groups=c,
            bias=np.zeros(c, np.float32),
            metadata=meta,
        )
        node.input_type = {"input": np.array((c, h, w))}
    ctx.add(f"layer{i}_pool", node, out)
    add_neuron(ctx, i, g["neuron"], _bias(g, out), "hidden")


def _flatten(ctx: NetxContext, i: int, g: Any) -> None:
    if ctx.shape is None:
        raise ValueError("nothing to flatten: no layer before it")
    n = int(np.prod(ctx.shape))
    if "shape" in g and int(np.prod(_shape(g))) != n:
        raise ValueError(f"the file gives shape {list(_shape(g))}, but {n} values arrive")
    node = nir.Flatten(
        input_type={"input": np.array(ctx.shape)},
        start_dim=0,
        end_dim=-1,
        metadata={"netx": {"layer": i, "type": "flatten"}},
    )
    ctx.add(f"layer{i}_flatten", node, (n,))
    ctx.flatten_pending = True


def _dense(ctx: NetxContext, i: int, g: Any) -> None:
    n_out = int(np.prod(_shape(g)))
    weight = ints(g["weight"], "weight")
    weight = weight.reshape(n_out, -1) if weight.ndim == 1 else weight
    if weight.ndim != 2 or weight.shape[0] != n_out:
        raise ValueError(f"weight {list(weight.shape)} does not have the layer's {n_out} rows")
    if ctx.shape is None:  # no input layer: netx takes the input size from the weights
        ctx.add(
            "input",
            nir.Input(input_type={"input": np.array([weight.shape[1]])}),
            (int(weight.shape[1]),),
        )
    assert ctx.shape is not None
    if len(ctx.shape) != 1:
        raise ValueError(f"takes a {list(ctx.shape)} input without a flatten layer before it")
    if weight.shape[1] != ctx.shape[0]:
        raise ValueError(
            f"weight {list(weight.shape)} takes {weight.shape[1]} inputs, {ctx.shape[0]} arrive"
        )
    fit = netx_weight_fit(weight, ctx.weight_bits)
    if fit.problem:
        raise fail(
            ctx.path,
            f"layer {i} (dense): {fit.problem}; netx would run other weights than the file's",
        )
    node = nir.Linear(
        weight=weight.astype(np.float32),
        metadata=_weight_meta(
            ctx,
            i,
            "dense",
            weight,
            scale_bits=fit.scale_bits,
            weight_exp=-fit.scale_bits,
            num_weight_bits=fit.num_weight_bits,
        ),
    )
    ctx.add(f"layer{i}_dense", node, (n_out,))
    ctx.flatten_pending = False
    add_neuron(
        ctx, i, g["neuron"] if "neuron" in g else NETX_INTEGRATOR, _bias(g, (n_out,)), "hidden"
    )


#: The layer types stac reads, each with its builder.
BUILDERS: dict[str, Callable[[NetxContext, int, Any], None]] = {
    "input": _input,
    "conv": _conv,
    "pool": _pool,
    "flatten": _flatten,
    "dense": _dense,
}


def build_layer(ctx: NetxContext, i: int, ltype: str, g: Any) -> None:
    BUILDERS[ltype](ctx, i, g)


__all__ = ["BUILDERS", "build_layer", "unsupported"]
