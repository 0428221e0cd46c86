"""Lowering of GPT-2-family models (distilgpt2): Conv1D layout, GELU, LayerNorm, learned
positions."""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch

from stac.errors import StacError
from stac.frontend.builder import EncoderPlan, GraphBuilder, as_array, input_node
from stac.ir.nodes import Activation, CausalSelfAttention, Embedding, LayerNorm, Residual

_ACTIVATIONS = {
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


def neuron_inputs(model: Any) -> dict[str, torch.nn.Module]:
    """Each SignedIF encoder by name, with the HF module whose input it carries."""
    out: dict[str, torch.nn.Module] = {}
    for i, block in enumerate(model.transformer.h):
        out[f"layer{i}_qkv_in"] = block.attn.c_attn
        out[f"layer{i}_o_proj_in"] = block.attn.c_proj
        out[f"layer{i}_fc_in"] = block.mlp.c_fc
        out[f"layer{i}_down_in"] = block.mlp.c_proj
    out["lm_head_in"] = model.lm_head
    return out


def _conv1d(conv: Any) -> tuple[np.ndarray, np.ndarray]:
    """HF Conv1D stores weight as [in, out]; NIR wants [out, in]."""
    return np.ascontiguousarray(as_array(conv.weight).T), as_array(conv.bias)


def _layer_norm(ln: torch.nn.LayerNorm) -> LayerNorm:
    return LayerNorm(as_array(ln.weight), as_array(ln.bias), float(ln.eps))


def lower(model: Any, plan: EncoderPlan, metadata: dict[str, Any]) -> nir.NIRGraph:
    config = model.config
    act = _ACTIVATIONS.get(config.activation_function)
    if act is None:
        raise StacError(f"GPT-2 activation {config.activation_function!r} is not supported")
    heads = config.n_head
    head_dim = config.n_embd // heads
    width = config.n_embd
    b = GraphBuilder(plan)
    tr = model.transformer
    wte = as_array(tr.wte.weight)
    b.add("input", input_node())
    b.add("embed_tokens", Embedding(wte, "token"), "input")
    b.add("embed_positions", Embedding(as_array(tr.wpe.weight), "position"), "input")
    x = b.add("embed", Residual(width), "embed_tokens", "embed_positions")
    for i, block in enumerate(tr.h):
        scale = head_dim**-0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            scale /= i + 1
        h = b.add(f"layer{i}_attn_norm", _layer_norm(block.ln_1), x)
        h = b.spiking_linear(f"layer{i}_qkv", *_conv1d(block.attn.c_attn), h)
        h = b.add(f"layer{i}_attn", CausalSelfAttention(heads, heads, head_dim, scale), h)
        h = b.spiking_linear(f"layer{i}_o_proj", *_conv1d(block.attn.c_proj), h)
        x = b.add(f"layer{i}_resid_attn", Residual(width), x, h)
        h = b.add(f"layer{i}_mlp_norm", _layer_norm(block.ln_2), x)
        h = b.spiking_linear(f"layer{i}_fc", *_conv1d(block.mlp.c_fc), h)
        h = b.add(f"layer{i}_act", Activation(block.mlp.c_fc.nf, act), h)
        h = b.spiking_linear(f"layer{i}_down", *_conv1d(block.mlp.c_proj), h)
        x = b.add(f"layer{i}_resid_mlp", Residual(width), x, h)
    x = b.add("final_norm", _layer_norm(tr.ln_f), x)
    tied = model.lm_head.weight.data_ptr() == tr.wte.weight.data_ptr()
    head_w = wte if tied else as_array(model.lm_head.weight)
    bias = None if model.lm_head.bias is None else as_array(model.lm_head.bias)
    x = b.spiking_linear("lm_head", head_w, bias, x)
    b.add("output", nir.Output(output_type=np.array([head_w.shape[0]])), x)
    return b.graph(metadata)
