"""The chunked vocabulary cross-entropy: F.cross_entropy's loss and gradients, without N x V fp32."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bertpipe.models import vocab_loss
from bertpipe.models.vocab_loss import CHUNK_ELEMENTS, vocab_cross_entropy_and_argmax


def vocab_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return vocab_cross_entropy_and_argmax(logits, targets)[0]


def assert_one_bf16_rounding(ours: torch.Tensor, ref: torch.Tensor) -> None:
    """The same fp32 gradient up to its last bits, rounded once to bf16: one bf16 step
    (2^-7 of the value) at most, and nearly always exactly equal."""
    diff = (ours.float() - ref.float()).abs()
    assert (diff <= 2**-7 * ref.float().abs()).all()
    assert (diff == 0).float().mean() > 0.99


def logits_and_targets(n: int, v: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = (3 * torch.randn(n, v, generator=g)).to(dtype).requires_grad_()
    return z, torch.randint(0, v, (n,), generator=g)


def test_chunks_are_uneven_and_many():
    n, v = 101, 30522  # 34 rows a chunk: 3 chunks, the last one of 33 rows
    assert n * v > CHUNK_ELEMENTS and n % (CHUNK_ELEMENTS // v) != 0


@pytest.mark.parametrize("n", [101, 1])
def test_fp32_loss_and_gradient_equal_f_cross_entropy(n):
    v = 30522 if n > 1 else CHUNK_ELEMENTS + 1  # one row wider than a chunk: one-row chunks
    z, t = logits_and_targets(n, v, torch.float32)
    ours = vocab_cross_entropy(z, t)
    (g_ours,) = torch.autograd.grad(3.0 * ours, z)  # an upstream gradient that is not 1
    ref = F.cross_entropy(z, t)
    (g_ref,) = torch.autograd.grad(3.0 * ref, z)
    assert abs(ours.item() - ref.item()) <= 1e-6 * ref.item()
    assert (g_ours - g_ref).abs().max() <= 1e-6 * g_ref.abs().max()
    assert g_ours.dtype == torch.float32


def test_bf16_logits_get_fp32_math_and_a_bf16_gradient():
    z, t = logits_and_targets(101, 30522, torch.bfloat16)
    ours = vocab_cross_entropy(z, t)
    (g_ours,) = torch.autograd.grad(ours, z)
    ref = F.cross_entropy(z.float(), t)  # what the models did before: cast, then fp32
    (g_ref,) = torch.autograd.grad(ref, z)
    assert ours.dtype == torch.float32 and abs(ours.item() - ref.item()) <= 1e-6 * ref.item()
    assert g_ours.dtype == torch.bfloat16
    assert_one_bf16_rounding(g_ours, g_ref)


def test_no_targets_give_a_zero_loss_that_reaches_the_logits():
    z, _ = logits_and_targets(4, 10, torch.float32)
    loss = vocab_cross_entropy(z, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(z.grad, torch.zeros_like(z))


def test_small_outputs_and_compiled_graphs_take_f_cross_entropy(monkeypatch):
    calls = []
    monkeypatch.setattr(
        vocab_loss._ChunkedSoftmaxCrossEntropy,
        "apply",
        lambda *a: calls.append(a) or (a[0].sum(), a[0].argmax(-1)),
    )
    z, t = logits_and_targets(8, 100, torch.float32)
    assert torch.allclose(vocab_cross_entropy(z, t), F.cross_entropy(z, t))
    assert calls == []
    z, t = logits_and_targets(101, 30522, torch.float32)
    vocab_cross_entropy(z, t)
    assert len(calls) == 1 and calls[0][3] == CHUNK_ELEMENTS // 30522


@pytest.mark.parametrize("n", [101, 3])  # chunked, and small enough for F.cross_entropy
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_bias_is_added_chunk_by_chunk_in_fp32(n, dtype):
    """BERT's MLM head: ``scores + bias`` (fp32 from bf16 scores) is never one N x V tensor,
    the loss, both gradients and the argmax are those of the whole fp32 logits."""
    scores, t = logits_and_targets(n, 30522, dtype)
    g = torch.Generator().manual_seed(1)
    bias = (torch.randn(30522, generator=g) + 1e-3).requires_grad_()  # not exact in bf16
    ours, predictions = vocab_cross_entropy_and_argmax(scores, t, bias)
    g_scores, g_bias = torch.autograd.grad(2.0 * ours, (scores, bias))
    logits = scores + bias  # what the head's forward returns: fp32
    ref = F.cross_entropy(logits, t)
    r_scores, r_bias = torch.autograd.grad(2.0 * ref, (scores, bias))
    assert logits.dtype == torch.float32 and ours.dtype == torch.float32
    assert abs(ours.item() - ref.item()) <= 1e-6 * ref.item()
    assert torch.equal(predictions, logits.argmax(-1)) and not predictions.requires_grad
    assert g_bias.dtype == torch.float32 and g_scores.dtype == dtype
    assert (g_bias - r_bias).abs().max() <= 1e-6 * r_bias.abs().max()  # only the order of sums
    if dtype == torch.float32:
        assert (g_scores - r_scores).abs().max() <= 1e-6 * r_scores.abs().max()
    else:
        assert_one_bf16_rounding(g_scores, r_scores)


def test_no_targets_give_a_zero_loss_that_reaches_the_scores_and_the_bias():
    z, _ = logits_and_targets(4, 10, torch.float32)
    bias = torch.ones(10, requires_grad=True)
    loss, predictions = vocab_cross_entropy_and_argmax(z, torch.zeros(0, dtype=torch.long), bias)
    loss.backward()
    assert loss.item() == 0.0 and predictions.shape == (0,)
    assert torch.equal(z.grad, torch.zeros_like(z)) and torch.equal(bias.grad, torch.zeros(10))
