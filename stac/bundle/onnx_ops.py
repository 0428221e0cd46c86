"""stac's host ops as ONNX nodes (``onnx.helper``), one builder per IR node type.

Each builder writes the op's nodes into a :class:`GraphBuilder` and returns the name of the
tensor holding its output. The arithmetic follows the reference semantics in
:mod:`stac.sim.semantics` op for op (same formulas, same order of the summed inputs, RoPE's
inverse frequencies computed by torch exactly as the simulator computes them), so an ONNX
runtime agrees with stac's simulator to float32 rounding. A node type without a builder is a
:class:`StacError` naming the node.

Tensors are ``[batch, tokens, features]`` float32; ``token_ids`` and ``positions`` are
``[batch, tokens]`` int64. Attention reads ``<name>.past_key`` / ``<name>.past_value``
(``[batch, kv_heads, past, head_dim]``, keys already rotated) and writes
``<name>.present_key`` / ``<name>.present_value`` with this call's tokens appended.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from stac.errors import StacError
from stac.ir.nodes import (
    Readout,
    Activation,
    CausalSelfAttention,
    Embedding,
    GatedActivation,
    LayerNorm,
    Residual,
    RMSNorm,
    Rotation,
)
from stac.ir.nodes.rotation import hadamard

#: The ONNX opset every host graph is written in.
OPSET = 17
TOKEN_IDS = "token_ids"
POSITIONS = "positions"
FLOAT_MIN = float(np.finfo(np.float32).min)  # the simulator's masked_fill value


def cache_names(name: str) -> dict[str, str]:
    """The four cache tensors of attention node ``name``."""
    return {
        "past_key": f"{name}.past_key",
        "past_value": f"{name}.past_value",
        "present_key": f"{name}.present_key",
        "present_value": f"{name}.present_value",
    }


@dataclass
class GraphBuilder:
    """Nodes, weights and graph inputs of one ONNX graph under construction."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    inputs: dict[str, onnx.ValueInfoProto] = field(default_factory=dict)
    outputs: dict[str, onnx.ValueInfoProto] = field(default_factory=dict)
    steps: int = 0  # T, for ops defined on a token's sum (Readout); 0: not known
    _count: int = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}#{self._count}"

    def op(self, kind: str, inputs: list[str], hint: str, n_out: int = 1, **attrs: Any) -> Any:
        """Add one node; return its output name (or names when ``n_out > 1``)."""
        outs = [self.fresh(f"{hint}.{kind}") for _ in range(n_out)]
        self.nodes.append(helper.make_node(kind, inputs, outs, name=outs[0], **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value: Any, hint: str, dtype: Any = np.float32) -> str:
        name = self.fresh(f"{hint}.const")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def float_input(self, name: str, shape: list[Any]) -> str:
        if name not in self.inputs:
            self.inputs[name] = helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
        return name

    def int_input(self, name: str) -> str:
        if name not in self.inputs:
            self.inputs[name] = helper.make_tensor_value_info(
                name, TensorProto.INT64, ["batch", "tokens"]
            )
        return name

    def output(self, tensor: str, name: str, shape: list[Any]) -> None:
        """Expose ``tensor`` as graph output ``name``."""
        self.nodes.append(helper.make_node("Identity", [tensor], [name], name=f"{name}.out"))
        self.outputs[name] = helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    def model(self, graph_name: str, doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            graph_name,
            list(self.inputs.values()),
            list(self.outputs.values()),
            self.initializers,
            doc_string=doc,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="stac"
        )
        model.ir_version = 8  # the IR version of opset 17, readable by onnxruntime >= 1.14
        onnx.checker.check_model(model, full_check=True)
        return model


# --- the builders ----------------------------------------------------------------------------


def _layer_norm(b: GraphBuilder, name: str, node: LayerNorm, x: str) -> str:
    w, bias = b.const(node.weight, name), b.const(node.bias, name)
    return b.op("LayerNormalization", [x, w, bias], name, axis=-1, epsilon=float(node.eps))


def _rms_norm(b: GraphBuilder, name: str, node: RMSNorm, x: str) -> str:
    sq = b.op("Mul", [x, x], name)
    ms = b.op("ReduceMean", [sq], name, axes=[-1], keepdims=1)
    inv = b.op(
        "Reciprocal", [b.op("Sqrt", [b.op("Add", [ms, b.const(node.eps, name)], name)], name)], name
    )
    return b.op("Mul", [b.op("Mul", [x, inv], name), b.const(node.weight, name)], name)


def _act(b: GraphBuilder, name: str, kind: str, x: str) -> str:
    """f(x) for f in stac's activations (the simulator's torch functions, written out)."""
    if kind == "relu":
        return b.op("Relu", [x], name)
    if kind == "silu":
        return b.op("Mul", [x, b.op("Sigmoid", [x], name)], name)
    half_x = b.op("Mul", [x, b.const(0.5, name)], name)
    if kind == "gelu":  # 0.5 x (1 + erf(x / sqrt 2))
        erf = b.op("Erf", [b.op("Mul", [x, b.const(1 / math.sqrt(2.0), name)], name)], name)
    elif kind == "gelu_tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = b.op("Mul", [b.op("Mul", [x, x], name), x], name)
        inner = b.op("Add", [x, b.op("Mul", [cube, b.const(0.044715, name)], name)], name)
        scaled = b.op("Mul", [inner, b.const(math.sqrt(2.0 / math.pi), name)], name)
        erf = b.op("Tanh", [scaled], name)
    else:
        raise StacError(f"node {name!r}: activation {kind!r} has no ONNX form in the bundle")
    return b.op("Mul", [half_x, b.op("Add", [erf, b.const(1.0, name)], name)], name)


def _activation(b: GraphBuilder, name: str, node: Activation, x: str) -> str:
    return _act(b, name, node.kind, x)


def _gated(b: GraphBuilder, name: str, node: GatedActivation, x: str) -> str:
    sizes = b.const([node.size, node.size], name, np.int64)
    gate, up = b.op("Split", [x, sizes], name, n_out=2, axis=-1)
    return b.op("Mul", [_act(b, name, node.kind, gate), up], name)


def _residual(b: GraphBuilder, name: str, node: Residual, x: str) -> str:  # noqa: ARG001
    return b.op("Identity", [x], name)


def _readout(b: GraphBuilder, name: str, node: Readout, x: str) -> str:
    """The simulator's Readout on a token mean x: ``clip(floor(T x / step + 1/2), -L, L) step
    / T`` (what the chip's compartments send, applied where the host reads it)."""
    if b.steps < 1:
        raise StacError(f"{name}: a Readout needs the graph's T (conversion.timesteps)")
    step = b.const(np.asarray(node.step, dtype=np.float32), name)
    t = b.const(float(b.steps), name)
    scaled = b.op("Div", [b.op("Mul", [x, t], name), step], name)
    level = b.op("Floor", [b.op("Add", [scaled, b.const(0.5, name)], name)], name)
    top = float(node.max_level)
    level = b.op("Clip", [level, b.const(-top, name), b.const(top, name)], name)
    return b.op("Div", [b.op("Mul", [level, step], name), t], name)


def _rotation(b: GraphBuilder, name: str, node: Rotation, x: str) -> str:
    """The simulator's ``x R``: signs, then ``[m, b]`` rows times ``H_b``, then ``mix^T``."""
    m, block = int(node.mix.shape[0]), node.block
    flipped = b.op("Mul", [x, b.const(np.asarray(node.signs, np.float32), name)], name)
    rows = b.op("Reshape", [flipped, b.const([0, 0, m, block], name, np.int64)], name)
    rows = b.op("MatMul", [rows, b.const(hadamard(block).astype(np.float32), name)], name)
    mixed = b.op("MatMul", [b.const(np.asarray(node.mix, np.float32).T.copy(), name), rows], name)
    return b.op("Reshape", [mixed, b.const([0, 0, node.size], name, np.int64)], name)


def _embedding(b: GraphBuilder, name: str, node: Embedding, x: str) -> str:  # noqa: ARG001
    index = b.int_input(TOKEN_IDS if node.index == "token" else POSITIONS)
    return b.op("Gather", [b.const(node.weight, name), index], name, axis=0)


def _heads(b: GraphBuilder, name: str, x: str, heads: int, dim: int) -> str:
    """``[B, N, heads * dim]`` -> ``[B, heads, N, dim]``."""
    shaped = b.op("Reshape", [x, b.const([0, 0, heads, dim], name, np.int64)], name)
    return b.op("Transpose", [shaped], name, perm=[0, 2, 1, 3])


def _rope(b: GraphBuilder, name: str, x: str, cos: str, sin: str, d: int) -> str:
    """The simulator's rotate-half RoPE: ``x cos + [-x2, x1] sin``."""
    axis, step = b.const([-1], name, np.int64), b.const([1], name, np.int64)
    half, end = b.const([d // 2], name, np.int64), b.const([d], name, np.int64)
    x1 = b.op("Slice", [x, b.const([0], name, np.int64), half, axis, step], name)
    x2 = b.op("Slice", [x, half, end, axis, step], name)
    rotated = b.op("Concat", [b.op("Neg", [x2], name), x1], name, axis=-1)
    return b.op("Add", [b.op("Mul", [x, cos], name), b.op("Mul", [rotated, sin], name)], name)


def _attention(b: GraphBuilder, name: str, node: CausalSelfAttention, x: str) -> str:
    h, hkv, d = node.num_heads, node.num_kv_heads, node.head_dim
    sizes = b.const([node.q_size, node.kv_size, node.kv_size], name, np.int64)
    q, k, v = b.op("Split", [x, sizes], name, n_out=3, axis=-1)
    q, k, v = _heads(b, name, q, h, d), _heads(b, name, k, hkv, d), _heads(b, name, v, hkv, d)
    if node.rope_theta:
        # inv_freq as the simulator computes it (torch, float32), stored as a constant.
        inv = 1.0 / (node.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        pos = b.op("Cast", [b.int_input(POSITIONS)], name, to=TensorProto.FLOAT)
        pos = b.op("Unsqueeze", [pos, b.const([-1], name, np.int64)], name)
        angles = b.op("Mul", [pos, b.const(inv.numpy(), name)], name)  # [B, N, d/2]
        emb = b.op("Concat", [angles, angles], name, axis=-1)
        emb = b.op("Unsqueeze", [emb, b.const([1], name, np.int64)], name)  # [B, 1, N, d]
        cos, sin = b.op("Cos", [emb], name), b.op("Sin", [emb], name)
        q, k = _rope(b, name, q, cos, sin, d), _rope(b, name, k, cos, sin, d)
    cache = cache_names(name)
    past_shape = ["batch", hkv, f"{name}.past", d]
    present_shape = ["batch", hkv, f"{name}.present", d]
    past_k = b.float_input(cache["past_key"], past_shape)
    past_v = b.float_input(cache["past_value"], past_shape)
    k = b.op("Concat", [past_k, k], name, axis=2)
    v = b.op("Concat", [past_v, v], name, axis=2)
    b.output(k, cache["present_key"], present_shape)
    b.output(v, cache["present_value"], present_shape)
    if h != hkv:  # grouped-query heads: query head i reads KV head i // (h / hkv)
        share = b.const([i // (h // hkv) for i in range(h)], name, np.int64)
        k = b.op("Gather", [k, share], name, axis=1)
        v = b.op("Gather", [v, share], name, axis=1)
    kt = b.op("Transpose", [k], name, perm=[0, 1, 3, 2])
    scores = b.op("Mul", [b.op("MatMul", [q, kt], name), b.const(node.scale, name)], name)
    # Causal mask: query i (of n) may read key j (of total) when j <= i + (total - n).
    zero, one = b.const(0, name, np.int64), b.const(1, name, np.int64)
    n = b.op("Gather", [b.op("Shape", [q], name), b.const(2, name, np.int64)], name, axis=0)
    total = b.op("Gather", [b.op("Shape", [k], name), b.const(2, name, np.int64)], name, axis=0)
    past = b.op("Sub", [total, n], name)
    rows = b.op("Unsqueeze", [b.op("Range", [zero, n, one], name), one], name)  # [n, 1]
    cols = b.op("Range", [zero, total, one], name)  # [total]
    allowed = b.op("LessOrEqual", [cols, b.op("Add", [rows, past], name)], name)
    masked = b.op("Where", [allowed, scores, b.const(FLOAT_MIN, name)], name)
    out = b.op("MatMul", [b.op("Softmax", [masked], name, axis=-1), v], name)
    out = b.op("Transpose", [out], name, perm=[0, 2, 1, 3])
    return b.op("Reshape", [out, b.const([0, 0, h * d], name, np.int64)], name)


Builder = Callable[[GraphBuilder, str, Any, str], str]

#: Host op type -> its ONNX builder.
BUILDERS: dict[type, Builder] = {
    LayerNorm: _layer_norm,
    RMSNorm: _rms_norm,
    Activation: _activation,
    GatedActivation: _gated,
    Residual: _residual,
    Readout: _readout,
    Embedding: _embedding,
    CausalSelfAttention: _attention,
    Rotation: _rotation,
}

__all__ = ["BUILDERS", "OPSET", "POSITIONS", "TOKEN_IDS", "GraphBuilder", "cache_names"]
