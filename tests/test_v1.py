"""The V1 model (stac.train.v1): it fires, its L1 term acts, it is causal, it is measured."""

from __future__ import annotations

import pytest
import torch

from stac.artifact import load_artifact
from stac.errors import StacError
from stac.frontend.text import play_text
from stac.train.finetune import text_windows
from stac.train.v1 import V1Head, backbone_features, load_backbone, train_v1


@pytest.fixture(scope="module")
def setup(tiny_gpt2_artifact):
    art = load_artifact(tiny_gpt2_artifact)
    tok = art.tokenizer()
    net, width, vocab = load_backbone(art)
    train_ids = text_windows(tok, play_text("romances/the-tempest")[:12_000], 24)[:12]
    test_ids = text_windows(tok, play_text("tragedies/hamlet")[:4_000], 24)[:4]
    train = (*backbone_features(net, train_ids, 4), train_ids)
    held = (*backbone_features(net, test_ids, 4), test_ids)
    return net, width, vocab, train, held


def test_untrained_head_fires_and_is_the_backbone(setup):
    _, width, vocab, _, held = setup
    head = V1Head(width, vocab, neurons=16, steps=16)
    extra, spikes = head(held[0])
    assert torch.equal(extra, torch.zeros_like(extra))  # the backbone, exactly, at the start
    rate = float(spikes.detach().mean())
    assert 0.02 < rate < 0.9  # it fires (the prototype's never did), but not every step


def test_causal_position_t_sees_only_positions_up_to_t(setup):
    _, width, vocab, train, _ = setup
    head = V1Head(width, vocab, neurons=16, steps=8)
    with torch.no_grad():
        torch.nn.init.normal_(head.out.weight)
    h = train[0][:1].clone()
    a, _ = head(h)
    p = 10
    h[:, p] += 3.0 * torch.randn(h.shape[-1], generator=torch.Generator().manual_seed(0))
    b, _ = head(h)
    assert torch.equal(a[:, :p], b[:, :p])
    assert not torch.equal(a[:, p:], b[:, p:])


def test_training_beats_the_backbone_and_l1_lowers_the_rate(setup):
    _, width, vocab, train, held = setup
    plain = train_v1(V1Head(width, vocab, 16, 8), train, held, steps=30, spike_l1=0.0)
    sparse = train_v1(V1Head(width, vocab, 16, 8), train, held, steps=30, spike_l1=200.0)
    assert plain.l1_term_first == 0.0 and sparse.l1_term_first > 0
    assert plain.v1_perplexity < plain.backbone_perplexity, plain  # it helps held-out text
    # measured (seeded): 0.0578 with the penalty, 0.0667 without, 0.0626 untrained
    assert sparse.spike_rate_after < 0.95 * plain.spike_rate_after, (plain, sparse)
    assert sparse.spike_rate_after < sparse.spike_rate_before, sparse
    assert sparse.spike_rate_after > 0, sparse  # lower, not silenced


def test_lm_head_readout_is_the_models_own_and_starts_at_the_backbone(
    setup, tiny_gpt2_artifact, tiny_gpt2_dir
):
    """Read out through the backbone's LM head: the matrix is the transformers model's
    ``lm_head`` as the chip holds it (rounded to the nearest step of its row's 8-bit grid), the
    untrained head adds exactly 0, and it learns 2 n D numbers instead of 2 n vocab."""
    from stac.frontend.models import load_model
    from stac.train.v1 import lm_head_weight

    _, width, vocab, _, held = setup
    art = load_artifact(tiny_gpt2_artifact)
    readout = lm_head_weight(art)
    hf = load_model(str(tiny_gpt2_dir)).model.lm_head.weight.detach()
    scale = torch.as_tensor(art.graph.nodes["lm_head"].metadata["quant"]["scale"])[:, None]
    assert not torch.equal(readout, hf)
    assert bool(((readout - hf).abs() <= 0.5 * scale + 1e-7).all())
    head = V1Head(width, vocab, neurons=16, steps=8, readout=readout)
    extra, _ = head(held[0])
    assert extra.shape[-1] == vocab and torch.equal(extra, torch.zeros_like(extra))
    assert head.out.weight.shape == (width, 32)
    with pytest.raises(StacError, match="readout must be"):
        V1Head(width, vocab, neurons=16, readout=readout[:, :-1])
