"""The cross-entropy of a vocabulary-sized prediction (MLM, next token), in row chunks.

``F.cross_entropy(logits.float(), targets)`` on (N, V) logits materialises four N x V fp32
tensors per step (the cast, the log-probabilities, nll's zero-filled gradient, the
log-softmax gradient). At BERT-mini's 608 x 30522 each is 74 MB: above glibc's largest
mmap threshold (32 MB), so every one is a fresh mapping whose pages fault in on first
touch. That was a quarter of a CPU pretraining step (docs/LOG.md, 2026-12-03, night).

``vocab_cross_entropy_and_argmax`` computes the same loss and gradient over chunks of rows, each
a few MB: the forward keeps nothing but its inputs, the backward recomputes the softmax a
chunk at a time (``torch.softmax(..., dtype=float32)``, one fused pass reading the
logits in their own dtype) and writes the gradient in the logits' dtype, which is what the
decoder's bf16 matmul consumes under autocast anyway. The math is in fp32 as before;
only the summation order of the bias gradient differs. On CUDA, whose caching allocator
reuses its blocks, it runs as one chunk; under ``torch.compile`` and for small outputs it is
``F.cross_entropy``.

It also takes an output bias (BERT's MLM head) and adds it to each chunk of bf16 scores in
fp32, so the fp32 logits ``scores + bias`` (and their fp32 gradient, 74 MB each at
BERT-mini's batch) never exist whole; and it returns the argmax per row that the accuracy
metric needs, from the same logits, in the same pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 1 << 20
"""Elements per chunk (4 MB in fp32): small enough to stay in the allocator's reused heap."""


def _logits(scores: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The logits of a chunk: the scores, plus the output bias (which promotes bf16 to fp32)."""
    return scores if bias is None else scores + bias


class _ChunkedSoftmaxCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, bias, targets, rows):
        n = scores.shape[0]
        nll = torch.empty(n, dtype=torch.float32, device=scores.device)
        predictions = torch.empty(n, dtype=torch.long, device=scores.device)
        for s in range(0, n, rows):
            z = _logits(scores[s : s + rows], bias)  # (rows, V)
            logp = torch.log_softmax(z, -1, dtype=torch.float32)
            nll[s : s + rows] = -logp.gather(1, targets[s : s + rows, None]).squeeze(1)
            torch.argmax(z, -1, out=predictions[s : s + rows])
        ctx.save_for_backward(scores, bias, targets)
        ctx.rows = rows
        ctx.mark_non_differentiable(predictions)
        return nll.mean(), predictions

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, _grad_predictions):
        scores, bias, targets = ctx.saved_tensors
        n, rows = scores.shape[0], ctx.rows
        scale = grad_loss.float() / n
        grad = torch.empty_like(scores)
        grad_bias = None if bias is None else torch.zeros_like(bias, dtype=torch.float32)
        index = torch.arange(min(rows, n), device=scores.device)
        for s in range(0, n, rows):
            p = torch.softmax(_logits(scores[s : s + rows], bias), -1, dtype=torch.float32)
            p[index[: p.shape[0]], targets[s : s + rows]] -= 1.0  # (rows, V)
            if grad_bias is None:
                torch.mul(p, scale, out=grad[s : s + rows])  # cast to the scores' dtype on the way
            else:
                p.mul_(scale)
                grad_bias += p.sum(0)  # fp32, as the bias's own gradient
                grad[s : s + rows] = p
        if grad_bias is not None:
            grad_bias = grad_bias.to(bias.dtype)
        return grad, grad_bias, None, None


def vocab_cross_entropy_and_argmax(
    scores: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of the (N, V) logits ``scores + bias`` against (N,) class indices,
    computed in fp32, and the logits' argmax per row (the predictions accuracy needs).

    With a bias the logits are never one N x V tensor: each chunk adds the bias to its rows
    of the scores (in fp32 when the scores are bf16, as ``scores + bias`` would), and the
    backward pass sums the bias's gradient in fp32 chunk by chunk. Every target must be a
    real class (select the labelled rows first). Zero rows give a zero loss that still
    depends on the scores, so the backward pass reaches every weight."""
    if not targets.numel():
        zero = scores.sum() * 0.0 + (0.0 if bias is None else bias.sum() * 0.0)
        return zero, targets.new_zeros(0)
    if torch.compiler.is_compiling() or scores.shape[0] * scores.shape[1] <= CHUNK_ELEMENTS:
        logits = _logits(scores, bias)
        return F.cross_entropy(logits.float(), targets), logits.argmax(-1)
    # CUDA's caching allocator reuses its blocks: there one chunk, i.e. no per-chunk launches.
    rows = max(1, CHUNK_ELEMENTS // scores.shape[1]) if scores.device.type == "cpu" else len(scores)
    return _ChunkedSoftmaxCrossEntropy.apply(scores, bias, targets, rows)
