"""The shared CPU dropout and attention (``models/dropout.py``): exact values, fairness, causality.

Fast unit tier: random tensors and random weights, no data.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bertpipe.config import ModelConfig
from bertpipe.models import gpt
from bertpipe.models.dropout import (
    Dropout,
    attention,
    attention_probs,
    cpu_keep_scale,
    dropout,
)
from bertpipe.models.registry import FAMILIES, family_config


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
    ours = attention_probs(q, k, mask) @ v
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert (ours - ref).abs().max() <= 1e-6


def test_explicit_cpu_attention_drops_probabilities_with_the_cpu_mask():
    q, k, v, mask = _qkv(1)
    torch.manual_seed(5)
    ours = attention(q, k, v, mask, 0.25)
    torch.manual_seed(5)
    probs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # consumes no random numbers
    att = ((q @ k.transpose(-2, -1)) / 4.0).masked_fill(~mask, float("-inf")).softmax(-1)
    expected = (att * cpu_keep_scale(att.shape, 0.25, att.dtype)) @ v
    assert (ours - expected).abs().max() <= 1e-6
    assert (ours - probs).abs().max() > 1e-2  # dropout did something


def test_causal_attention_with_dropout_is_the_causal_softmax_times_the_cpu_mask():
    q, k, v, _ = _qkv(2)
    torch.manual_seed(7)
    ours = attention(q, k, v, None, 0.25, is_causal=True)
    torch.manual_seed(7)
    T = q.shape[-2]
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    att = ((q @ k.transpose(-2, -1)) / 4.0).masked_fill(future, float("-inf")).softmax(-1)
    expected = (att * cpu_keep_scale(att.shape, 0.25, att.dtype)) @ v
    assert (ours - expected).abs().max() <= 1e-6
    no_drop = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert (attention(q, k, v, None, 0.0, is_causal=True) - no_drop).abs().max() <= 1e-6


def test_causal_attention_with_a_padding_mask_keeps_both():
    q, k, v, mask = _qkv(3)
    torch.manual_seed(1)
    ours = attention(q, k, v, mask, 0.25, is_causal=True)
    torch.manual_seed(1)
    both = mask & torch.ones(12, 12, dtype=torch.bool).tril()
    expected = dropout(attention_probs(q, k, both), 0.25, True) @ v
    assert torch.equal(ours, expected)


def test_gpt_in_training_mode_on_cpu_never_reads_a_later_token():
    """Dropout on everywhere (embeddings, attention probabilities, residuals): the same seed draws
    the same masks, so changing the last tokens must leave every earlier position's logits."""
    c = gpt.GPTConfig(vocab_size=50, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    assert c.attn_pdrop and c.resid_pdrop and c.embd_pdrop
    torch.manual_seed(0)
    model = gpt.GPTLMHeadModel(c).train()
    ids = torch.randint(5, 50, (2, 12))
    later = ids.clone()
    later[:, 9:] = (later[:, 9:] + 7) % 45 + 5
    torch.manual_seed(3)
    a = model(ids).logits
    torch.manual_seed(3)
    b = model(later).logits
    assert torch.equal(a[:, :9], b[:, :9])
    assert not torch.equal(a[:, 9:], b[:, 9:])
    torch.manual_seed(4)
    assert not torch.equal(model(ids).logits[:, :9], a[:, :9])  # dropout did draw


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_drops_out_through_the_shared_module(name):
    """No family builds torch's ``nn.Dropout`` (CPU ``bernoulli_``, a fifth of a step)."""
    family = FAMILIES[name]
    cfg = ModelConfig.model_validate({"bert": {"size": "tiny"}})
    config = family_config(family, cfg, 50, 0)
    networks = [family.pretraining] if family.pretraining else []
    networks += [family.head(h) for h in family.heads]
    for cls in networks:
        labels = {"id2label": {"0": "a", "1": "b"}} if cls is not family.pretraining else {}
        model = cls(dataclasses.replace(config, **labels))
        kinds = {type(m) for m in model.modules()}
        assert nn.Dropout not in kinds, cls.__name__
        assert Dropout in kinds or name == "modern", cls.__name__  # modern's recipe: p = 0
