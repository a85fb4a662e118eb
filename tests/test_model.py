"""The BERT network's own paths: CPU dropout, the explicit CPU attention, shapes, init."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bertpipe.models.bert import (
    BertConfig,
    BertForPreTraining,
    Dropout,
    cpu_keep_scale,
    dropout,
    explicit_attention,
)


def test_cpu_dropout_keeps_the_right_fraction_scaled_and_zeros_the_rest():
    torch.manual_seed(0)
    x = torch.rand(1000, 1000) + 0.5  # no exact zeros in the input
    y = dropout(x, 0.1, training=True)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.002  # 1e6 draws: std 0.0003
    assert torch.equal(y[kept], x[kept] * (1.0 / 0.9))
    assert torch.equal(y[~kept], torch.zeros_like(y[~kept]))
    assert dropout(x, 0.1, training=False) is x and dropout(x, 0.0, training=True) is x
    module = Dropout(0.5).eval()
    assert module(x) is x


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_cpu_keep_scale_is_fair_in_every_int16_lane(p):
    """Each int64 draw feeds four elements, one int16 lane each."""
    torch.manual_seed(0)
    scale = cpu_keep_scale(torch.Size([999, 1001]), p, torch.float32)  # n not a multiple of 4
    assert scale.shape == (999, 1001) and scale.dtype == torch.float32
    assert set(scale.unique().tolist()) == {0.0, torch.tensor(1 / (1 - p)).item()}
    drop = (scale == 0).flatten()[: 999 * 1000].view(-1, 4).float().mean(0)  # 250k draws a lane
    assert (drop - p).abs().max() < 0.004, drop  # std 0.001


def test_cpu_keep_scale_takes_the_dtype_it_multiplies():
    """In bf16 the multiplier is 1 / (1 - p) rounded to bf16, as ``F.dropout``'s noise tensor."""
    scale = cpu_keep_scale(torch.Size([64, 64]), 0.1, torch.bfloat16)
    assert scale.dtype == torch.bfloat16
    assert scale.max().item() == torch.tensor(1 / 0.9, dtype=torch.bfloat16).item()


def _qkv(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 4, 12, 16, generator=g) for _ in range(3))  # (B, nh, T, hs)
    mask = torch.ones(2, 1, 1, 12, dtype=torch.bool)
    mask[1, ..., 9:] = False  # padding in the second row
    return q, k, v, mask


def test_explicit_cpu_attention_equals_sdpa():
    q, k, v, mask = _qkv()
    ours = explicit_attention(q, k, v, mask, 0.0)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert (ours - ref).abs().max() <= 1e-6


def test_explicit_cpu_attention_drops_probabilities_with_the_cpu_mask():
    q, k, v, mask = _qkv(1)
    torch.manual_seed(5)
    ours = explicit_attention(q, k, v, mask, 0.25)
    torch.manual_seed(5)
    probs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # consumes no random numbers
    att = ((q @ k.transpose(-2, -1)) / 4.0).masked_fill(~mask, float("-inf")).softmax(-1)
    expected = (att * cpu_keep_scale(att.shape, 0.25, att.dtype)) @ v
    assert (ours - expected).abs().max() <= 1e-6
    assert (ours - probs).abs().max() > 1e-2  # dropout did something


def test_training_mode_uses_the_cpu_paths_and_eval_is_deterministic():
    cfg = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    model = BertForPreTraining(cfg)
    ids = torch.randint(5, 100, (2, 10))
    model.train()
    a, b = model(ids).mlm_logits, model(ids).mlm_logits
    assert not torch.equal(a, b)  # dropout on
    model.eval()
    assert torch.equal(model(ids).mlm_logits, model(ids).mlm_logits)
    assert model(ids).mlm_logits.shape == (2, 10, 100)


def test_mlm_bias_is_added_in_fp32_to_the_bf16_scores_under_autocast():
    """Folded into the bf16 matmul, the logits and the bias's gradient were bf16, and held-out
    MLM accuracy fell in five paired seeds of five (docs/LOG.md, 2026-12-03)."""
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    head = BertForPreTraining(cfg).eval().cls.predictions
    with torch.no_grad():
        head.bias.copy_(torch.linspace(-9.0, 9.0, 100) + 1e-3)  # not exact in bf16
    h = torch.randn(7, 32)
    with torch.autocast("cpu", torch.bfloat16), torch.no_grad():
        logits = head(h)
        scores = head.decoder(head.transform(h))
    assert logits.dtype == torch.float32 and scores.dtype == torch.bfloat16
    assert torch.equal(logits, scores.float() + head.bias)
