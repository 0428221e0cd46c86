"""Causal self-attention: the dynamic matmuls and softmax NIR lacks, with its KV cache."""

from __future__ import annotations

from dataclasses import dataclass

from stac.ir.nodes.base import StacNode, check_positive


@dataclass(frozen=True, eq=False)
class CausalSelfAttention(StacNode):
    r"""Multi-head causal attention over a host-side KV cache.

    The input is the concatenation ``[q, k, v]`` of one token's projections
    (``num_heads * head_dim + 2 * num_kv_heads * head_dim``). With RoPE (``rope_theta`` set) q
    and k are rotated by the token's position; k and v are appended to the cache; then per head
    :math:`o = \mathrm{softmax}(q K^T \cdot \mathrm{scale} + \mathrm{mask})\, V`, with grouped
    query heads sharing their KV head. Output: the heads concatenated (``num_heads * head_dim``).
    """

    num_heads: int  # query heads
    num_kv_heads: int  # key/value heads (grouped-query attention when fewer than num_heads)
    head_dim: int  # width of one head
    scale: float  # multiplies q.k before the softmax
    rope_theta: float = 0.0  # RoPE base; 0 means no rotary embedding (GPT-2)

    def __post_init__(self) -> None:
        for name in ("num_heads", "num_kv_heads", "head_dim", "scale"):
            check_positive("CausalSelfAttention", name, getattr(self, name))
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"CausalSelfAttention.num_heads ({self.num_heads}) must be a multiple of "
                f"num_kv_heads ({self.num_kv_heads})"
            )
        if self.rope_theta < 0:
            raise ValueError("CausalSelfAttention.rope_theta must be >= 0")

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.q_size + 2 * self.kv_size,)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.q_size,)
