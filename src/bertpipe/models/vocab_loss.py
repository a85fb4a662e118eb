"""The cross-entropy of a vocabulary-sized prediction (MLM, next token), in row chunks.

``F.cross_entropy(logits.float(), targets)`` on (N, V) logits materialises four N x V fp32
tensors per step (the cast, the log-probabilities, nll's zero-filled gradient, the
log-softmax gradient). At BERT-mini's 608 x 30522 each is 74 MB: above glibc's largest
mmap threshold (32 MB), so every one is a fresh mapping whose pages fault in on first
touch. That was a quarter of a CPU pretraining step (docs/LOG.md, 2026-12-03, night).

``vocab_cross_entropy`` computes the same loss and gradient over chunks of rows, each
a few MB: the forward keeps nothing but its inputs, the backward recomputes the softmax a
chunk at a time (``torch.softmax(..., dtype=float32)``, one fused pass reading the
logits in their own dtype) and writes the gradient in the logits' dtype, which is what the
decoder's bf16 matmul consumes under autocast anyway. The math is in fp32 as before;
only the summation order of the bias gradient differs. On CUDA, whose caching allocator
reuses its blocks, it runs as one chunk; under ``torch.compile`` and for small outputs it is
``F.cross_entropy``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 1 << 20
"""Elements per chunk (4 MB in fp32): small enough to stay in the allocator's reused heap."""


class _ChunkedSoftmaxCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, rows: int) -> torch.Tensor:
        n = logits.shape[0]
        nll = torch.empty(n, dtype=torch.float32, device=logits.device)
        for s in range(0, n, rows):
            logp = torch.log_softmax(logits[s : s + rows], -1, dtype=torch.float32)  # (rows, V)
            nll[s : s + rows] = -logp.gather(1, targets[s : s + rows, None]).squeeze(1)
        ctx.save_for_backward(logits, targets)
        ctx.rows = rows
        return nll.mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: torch.Tensor):
        logits, targets = ctx.saved_tensors
        n, rows = logits.shape[0], ctx.rows
        scale = grad_loss.float() / n
        grad = torch.empty_like(logits)
        index = torch.arange(min(rows, n), device=logits.device)
        for s in range(0, n, rows):
            p = torch.softmax(logits[s : s + rows], -1, dtype=torch.float32)  # (rows, V)
            p[index[: p.shape[0]], targets[s : s + rows]] -= 1.0
            torch.mul(p, scale, out=grad[s : s + rows])  # cast to the logits' dtype on the way
        return grad, None, None


def vocab_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (N, V) logits against (N,) class indices, computed in fp32.

    Every target must be a real class (select the labelled rows first). Zero rows give a
    zero loss that still depends on the logits, so the backward pass reaches every weight."""
    if not targets.numel():
        return logits.sum() * 0.0
    if torch.compiler.is_compiling() or logits.shape[0] * logits.shape[1] <= CHUNK_ELEMENTS:
        return F.cross_entropy(logits.float(), targets)
    # CUDA's caching allocator reuses its blocks: there one chunk, i.e. no per-chunk launches.
    rows = max(1, CHUNK_ELEMENTS // logits.shape[1]) if logits.device.type == "cpu" else len(logits)
    return _ChunkedSoftmaxCrossEntropy.apply(logits, targets, rows)
