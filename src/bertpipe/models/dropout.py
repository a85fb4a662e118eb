"""Dropout that is cheap on CPU, and attention whose probabilities it drops: every family's.

``F.dropout`` semantics everywhere (zero with probability p, scale the rest by 1 / (1 - p),
identity in eval mode or at p = 0). On GPU it *is* ``F.dropout`` and the fused SDPA kernels.
On CPU torch's ``bernoulli_`` cost a fifth of a BERT-mini training step, and SDPA with
``dropout_p`` runs its math path with that same ``bernoulli_``; here the keep-mask comes from
int16 random numbers, four to each 64-bit draw of the generator (a keep probability exact to
1/65536), and is multiplied in, so the backward is one multiplication too (docs/LOG.md,
2026-12-07). The draws come from torch's default CPU generator, so ``torch.manual_seed``
(Lightning's ``seed_everything``) fixes them as it fixes ``F.dropout``'s.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(x, p, training)``; on CPU the multiplier of ``cpu_keep_scale``."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    return x * cpu_keep_scale(x.shape, p, x.dtype)


def cpu_keep_scale(shape: torch.Size, p: float, dtype: torch.dtype) -> torch.Tensor:
    """Dropout's multiplier: 1 / (1 - p) where it keeps, 0 where it zeroes (probability p to
    1/65536), in ``dtype``, as ``F.dropout``'s own noise tensor is.

    One draw over the full 64 bits is four uniform int16 lanes, each compared with the same
    threshold. The boolean result is converted through its uint8 view, the vectorised path
    (the bool-to-float cast is about 8x slower), and the multiplier makes the backward one
    multiplication too (``masked_fill`` forward and backward cost 3x as much)."""
    n = math.prod(shape)
    r = torch.empty((n + 3) // 4, dtype=torch.int64, device="cpu").random_(-(2**63), None)
    keep = r.view(torch.int16)[:n] >= round(p * 65536) - 32768  # (n,) True with prob. 1 - p
    return keep.view(torch.uint8).to(dtype).mul_(1.0 / (1.0 - p)).view(shape)


class Dropout(nn.Module):
    """``nn.Dropout`` with the CPU multiplier above (no parameters, nothing in the state dict)."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    p: float,
    is_causal: bool = False,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, mask, p, is_causal)``: (B, nh, T, hd).

    With dropout on CPU it runs the softmax / dropout / matmul explicitly (SDPA's CPU path does
    the same in that case, with ``bernoulli_``); otherwise SDPA itself, fused where it can be."""
    if p and q.device.type == "cpu":
        if is_causal:
            T = q.shape[-2]
            causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()  # (T, T)
            mask = causal if mask is None else mask & causal
        return dropout(attention_probs(q, k, mask), p, True) @ v  # (B, nh, T, hd)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal)


def attention_probs(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) over the keys a query may attend to (``mask`` True): (B, nh, T, T)."""
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, nh, T, T)
    if mask is not None:  # added as a bias (0 / -inf): its backward is free, masked_fill's is not
        bias = torch.zeros(mask.shape, dtype=att.dtype, device=att.device)
        att = att + bias.masked_fill_(~mask, float("-inf"))
    return att.softmax(-1)
