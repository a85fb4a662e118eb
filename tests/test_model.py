"""The BERT network's own paths: training mode on CPU, the MLM bias under autocast, shapes, init."""

from __future__ import annotations

import torch

from bertpipe.models.bert import BertConfig, BertForPreTraining


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
