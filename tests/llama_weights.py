"""Copy a converted graph's linear maps into a transformers Llama, map by map (tests only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def copy_maps(model: Any, weight_of: Callable[[str], torch.Tensor]) -> None:
    """Give ``model`` (a ``LlamaForCausalLM``) the weight ``weight_of(name)`` of each of the
    graph's maps ``layer{i}_qkv``, ``_o_proj``, ``_gate_up``, ``_down`` and ``lm_head``."""
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            attn, mlp = layer.self_attn, layer.mlp
            qkv = weight_of(f"layer{i}_qkv")
            sizes = [m.weight.shape[0] for m in (attn.q_proj, attn.k_proj, attn.v_proj)]
            for m, w in zip((attn.q_proj, attn.k_proj, attn.v_proj), qkv.split(sizes), strict=True):
                m.weight.copy_(w)
            attn.o_proj.weight.copy_(weight_of(f"layer{i}_o_proj"))
            gate, up = weight_of(f"layer{i}_gate_up").chunk(2)
            mlp.gate_proj.weight.copy_(gate)
            mlp.up_proj.weight.copy_(up)
            mlp.down_proj.weight.copy_(weight_of(f"layer{i}_down"))
        model.lm_head.weight.copy_(weight_of("lm_head"))
