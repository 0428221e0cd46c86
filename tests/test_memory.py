"""The causal hyperdimensional memory: causality bit for bit, retrieval at the noise floor
hyperdimensional theory predicts, and gradients to the readout only."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stac.train.memory import CausalHDMemory, unbind


def _spikes(*shape: int, seed: int = 0, rate: float = 0.3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=gen) < rate).float()


@pytest.mark.parametrize("decay", [1.0, 0.9])
def test_a_future_token_never_changes_an_earlier_output(decay: float) -> None:
    torch.manual_seed(0)
    mem = CausalHDMemory(features=16, dim=1024, decay=decay, seed=1)
    x = _spikes(2, 12, 16)
    y = mem(x)
    for p in (1, 5, 11):
        changed = x.clone()
        changed[:, p] = 1 - changed[:, p]  # flip every feature of token p
        y2 = mem(changed)
        assert torch.equal(y2[:, :p], y[:, :p]), f"a change at {p} reached an earlier output"
        assert not torch.equal(y2[:, p], y[:, p])  # the change does reach position p
    assert y.shape == x.shape


def test_running_sum_is_causal_not_a_mean() -> None:
    # With one feature and decay 1, position t holds the shifted sum of positions <= t: the
    # first position sees only itself, whatever follows it.
    mem = CausalHDMemory(features=1, dim=64, seed=3)
    x = torch.tensor([[[1.0], [0.0], [1.0], [1.0]]])
    m = mem.memory(x)
    item = mem.items[0]
    assert torch.equal(m[0, 0], item)
    assert torch.equal(m[0, 1], torch.roll(item, 1))
    expected = torch.roll(item, 3) + torch.roll(item, 1) + item  # tokens at ages 3, 1, 0
    assert torch.allclose(m[0, 3], expected)


def test_unbinding_an_age_recovers_the_item_stored_there() -> None:
    d, n, feats = 4096, 16, 64
    mem = CausalHDMemory(features=feats, dim=d, seed=7)
    x = _spikes(1, n, feats, seed=11)
    h = mem.encode(x)[0]  # [n, d]
    last = mem.memory(x)[0, -1]
    norms = h.norm(dim=-1)
    total = norms.pow(2).sum().sqrt()
    floor = 1 / math.sqrt(d)  # cosine of a D-dim vector with an independent one
    for age in range(n):
        item = n - 1 - age
        got = F.cosine_similarity(unbind(last, age), h[item], dim=0).item()
        # signal: the item's share of the superposition; noise: scrambled items, ~1/sqrt(D)
        expected = (norms[item] / total).item()  # about 1/sqrt(n) = 0.25
        assert abs(got - expected) < 5 * floor, (age, got, expected)
        assert got > 10 * floor  # clearly above the floor: 0.2 to 0.3 against 0.016
    for age in (n, n + 7, 300):  # nothing was stored under these ages
        cos = F.cosine_similarity(unbind(last, age)[None], h, dim=-1)
        assert cos.abs().max().item() < 5 * floor, (age, cos.abs().max().item())


def test_gradients_reach_the_readout_and_the_input_not_the_items() -> None:
    mem = CausalHDMemory(features=8, dim=512, decay=0.95, seed=2)
    x = _spikes(3, 6, 8).requires_grad_()
    mem(x).pow(2).mean().backward()
    assert mem.readout.weight.grad is not None and mem.readout.weight.grad.abs().sum() > 0
    assert mem.readout.bias.grad is not None and mem.readout.bias.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0  # usable inside a deeper network
    assert [n for n, _ in mem.named_parameters()] == ["readout.weight", "readout.bias"]
    assert "items" in mem.state_dict()  # the fixed projection travels with the weights


def test_items_are_bipolar_and_fixed_by_the_seed() -> None:
    a, b, c = (CausalHDMemory(4, 256, seed=s) for s in (5, 5, 6))
    assert torch.equal(a.items.abs(), torch.ones(4, 256))
    assert torch.equal(a.items, b.items) and not torch.equal(a.items, c.items)


def test_memory_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="decay must be in"):
        CausalHDMemory(4, 64, decay=1.5)
    with pytest.raises(ValueError, match="features >= 1 and dim >= 2"):
        CausalHDMemory(0, 64)
    with pytest.raises(ValueError, match=r"input must be \[batch, seq, 4\]"):
        CausalHDMemory(4, 64)(torch.zeros(2, 3, 5))
