r"""A causal hyperdimensional memory: spike patterns bound by their age and superposed.

For input spikes :math:`x_t \in \{0, 1\}^F` (position t of a sequence), with a fixed random
bipolar item memory :math:`P \in \{-1, +1\}^{F \times D}` (seeded, never trained):

.. math::
    h_t = \frac{1}{\sqrt F}\, x_t P \qquad
    m_t = \lambda\, \rho(m_{t-1}) + h_t = \sum_{s \le t} \lambda^{t-s} \rho^{t-s}(h_s)
    \qquad y_t = W m_t + c

- **Encoding** :math:`h_t`: the bundle (sum) of the hypervectors of the features that
  spiked, so similar spike patterns get similar hypervectors (a random projection keeps
  angles).
- **Binding** by permutation: :math:`\rho` is a cyclic shift by one place, so an item stored
  s steps ago sits in the memory as :math:`\rho^{s}(h)`, bound to its *age*. Shifted copies
  of a random vector are nearly orthogonal to it (cosine of order :math:`1/\sqrt D`), which
  is what lets one vector hold many items. :func:`unbind` with age k applies
  :math:`\rho^{-k}` and brings the item of age k back into place, the others staying
  scrambled.
- **Superposition**: a causal running sum with decay :math:`\lambda \in (0, 1]` (1: a plain
  cumulative sum). Position t sums positions :math:`\le t` only: no position ever sees a
  later one, unlike a mean over the whole sequence. Ages alias modulo D, so sequences longer
  than D start to overlay old items on young ones.
- **Readout** :math:`W, c`: a learnable linear map from D back to F. Since unbinding any age
  is itself a fixed linear map, W can learn to read "the token k steps back" or any mix of
  ages.

**Retrieval.** With n items in the memory, unbinding the age of item j gives
:math:`h_j` plus n - 1 scrambled items, so :math:`\cos(\rho^{-k} m, h_j) \approx
\|h_j\| / \sqrt{\sum_i \|h_i\|^2}` (:math:`\approx 1/\sqrt n` for items of equal norm), and
each scrambled item adds noise of order :math:`1/\sqrt D` to it (a cosine between
independent D-dimensional vectors); an age under which nothing was stored gives a cosine of
order :math:`1/\sqrt D` with every item.

Input and output are ``[batch, seq, F]``; the output is real-valued (a current for the next
layer's neurons, or a bias added to the residual stream), not spikes.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def unbind(memory: torch.Tensor, age: int) -> torch.Tensor:
    """Undo the binding of age ``age`` along the last axis (the inverse of ``age`` shifts)."""
    return torch.roll(memory, -age, dims=-1)


class CausalHDMemory(nn.Module):
    """A causal hyperdimensional memory of ``features`` inputs in ``dim`` dimensions."""

    def __init__(self, features: int, dim: int = 4096, decay: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if features < 1 or dim < 2:
            raise ValueError(
                f"CausalHDMemory needs features >= 1 and dim >= 2, got "
                f"features={features}, dim={dim}"
            )
        if not 0 < decay <= 1:
            raise ValueError(f"CausalHDMemory.decay must be in (0, 1], got {decay}")
        self.features, self.dim, self.decay, self.seed = features, dim, float(decay), seed
        gen = torch.Generator().manual_seed(seed)
        items = torch.randint(0, 2, (features, dim), generator=gen).float() * 2 - 1
        self.register_buffer("items", items)  # fixed, saved with the module, no gradient
        self.readout = nn.Linear(dim, features)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Hypervectors :math:`h_t` of the spike patterns, ``[batch, seq, dim]``."""
        if x.dim() != 3 or x.shape[-1] != self.features:
            raise ValueError(
                f"CausalHDMemory: input must be [batch, seq, {self.features}], got {list(x.shape)}"
            )
        items = self.get_buffer("items")
        return (x.to(items.dtype) @ items) / math.sqrt(self.features)

    def memory(self, x: torch.Tensor) -> torch.Tensor:
        """The memory :math:`m_t` after each position, ``[batch, seq, dim]``."""
        h = self.encode(x)
        m = torch.zeros_like(h[:, 0])
        out = []
        for t in range(h.shape[1]):  # a recurrence: m_t depends on positions <= t only
            m = self.decay * torch.roll(m, 1, dims=-1) + h[:, t]
            out.append(m)
        return torch.stack(out, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Readout of the memory at every position, ``[batch, seq, features]``."""
        out: torch.Tensor = self.readout(self.memory(x))
        return out

    def extra_repr(self) -> str:
        return f"features={self.features}, dim={self.dim}, decay={self.decay}, seed={self.seed}"


__all__ = ["CausalHDMemory", "unbind"]
