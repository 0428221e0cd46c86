"""Lowering of Llama-family models (SmolLM2): RMSNorm, SwiGLU MLP, RoPE, grouped-query attention."""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch

from stac.errors import StacError
from stac.frontend.builder import EncoderPlan, GraphBuilder, as_array, input_node
from stac.ir.nodes import CausalSelfAttention, Embedding, GatedActivation, Residual, RMSNorm


def neuron_inputs(model: Any) -> dict[str, torch.nn.Module]:
    """Each SignedIF encoder by name, with the HF module whose input it carries."""
    out: dict[str, torch.nn.Module] = {}
    for i, layer in enumerate(model.model.layers):
        out[f"layer{i}_qkv_in"] = layer.self_attn.q_proj
        out[f"layer{i}_o_proj_in"] = layer.self_attn.o_proj
        out[f"layer{i}_gate_up_in"] = layer.mlp.gate_proj
        out[f"layer{i}_down_in"] = layer.mlp.down_proj
    out["lm_head_in"] = model.lm_head
    return out


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    rope_type = params.get("rope_type", "default")
    if rope_type != "default":
        raise StacError(f"RoPE scaling type {rope_type!r} is not supported (only 'default')")
    theta = params.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is None:
        raise StacError("the model config has no rope_theta")
    return float(theta)


def _bias(linear: torch.nn.Linear) -> np.ndarray | None:
    return None if linear.bias is None else as_array(linear.bias)


def _cat_bias(*linears: torch.nn.Linear) -> np.ndarray | None:
    if all(lin.bias is None for lin in linears):
        return None
    return np.concatenate(
        [
            as_array(lin.bias) if lin.bias is not None else np.zeros(lin.out_features, np.float32)
            for lin in linears
        ]
    )


def lower(model: Any, plan: EncoderPlan, metadata: dict[str, Any]) -> nir.NIRGraph:
    config = model.config
    if getattr(config, "hidden_act", "silu") != "silu":
        raise StacError(f"Llama MLP activation {config.hidden_act!r} is not supported (silu)")
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    theta = _rope_theta(config)
    b = GraphBuilder(plan)
    embed_weight = as_array(model.model.embed_tokens.weight)
    b.add("input", input_node())
    x = b.add("embed", Embedding(embed_weight, "token"), "input")
    for i, layer in enumerate(model.model.layers):
        attn, mlp = layer.self_attn, layer.mlp
        eps = float(layer.input_layernorm.variance_epsilon)
        h = b.add(f"layer{i}_attn_norm", RMSNorm(as_array(layer.input_layernorm.weight), eps), x)
        qkv_w = np.concatenate(
            [
                as_array(attn.q_proj.weight),
                as_array(attn.k_proj.weight),
                as_array(attn.v_proj.weight),
            ]
        )
        h = b.spiking_linear(
            f"layer{i}_qkv", qkv_w, _cat_bias(attn.q_proj, attn.k_proj, attn.v_proj), h
        )
        h = b.add(
            f"layer{i}_attn",
            CausalSelfAttention(heads, kv_heads, head_dim, head_dim**-0.5, theta),
            h,
        )
        h = b.spiking_linear(
            f"layer{i}_o_proj", as_array(attn.o_proj.weight), _bias(attn.o_proj), h
        )
        x = b.add(f"layer{i}_resid_attn", Residual(config.hidden_size), x, h)
        eps = float(layer.post_attention_layernorm.variance_epsilon)
        h = b.add(
            f"layer{i}_mlp_norm", RMSNorm(as_array(layer.post_attention_layernorm.weight), eps), x
        )
        gu_w = np.concatenate([as_array(mlp.gate_proj.weight), as_array(mlp.up_proj.weight)])
        h = b.spiking_linear(f"layer{i}_gate_up", gu_w, _cat_bias(mlp.gate_proj, mlp.up_proj), h)
        h = b.add(f"layer{i}_act", GatedActivation(mlp.gate_proj.out_features, "silu"), h)
        h = b.spiking_linear(
            f"layer{i}_down", as_array(mlp.down_proj.weight), _bias(mlp.down_proj), h
        )
        x = b.add(f"layer{i}_resid_mlp", Residual(config.hidden_size), x, h)
    norm = model.model.norm
    x = b.add("final_norm", RMSNorm(as_array(norm.weight), float(norm.variance_epsilon)), x)
    tied = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    head_w = embed_weight if tied else as_array(model.lm_head.weight)
    x = b.spiking_linear("lm_head", head_w, _bias(model.lm_head), x)
    b.add("output", nir.Output(output_type=np.array([head_w.shape[0]])), x)
    return b.graph(metadata)
