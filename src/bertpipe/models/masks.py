"""Attention masks the encoders share: padding masks and block-diagonal masks of packed rows.

A packed row (``data/packing.py``) holds several instances; ``instance_ids`` (R, T) names the
instance of every position (-1 for padding). Masks are boolean, True = may attend, shaped
to broadcast against attention scores (B, heads, T, T).
"""

from __future__ import annotations

import torch


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, T): every query attends to the real tokens of its row."""
    return attention_mask.bool()[:, None, None, :]


def block_mask(instance_ids: torch.Tensor) -> torch.Tensor:
    """(R, 1, T, T): a position attends only within its own instance; padding (-1) attends only
    to padding, so no query row is empty (SDPA would return NaN for it)."""
    return (instance_ids[:, :, None] == instance_ids[:, None, :])[:, None]


def sliding_window(mask: torch.Tensor, positions: torch.Tensor, window: int) -> torch.Tensor:
    """``mask`` restricted to keys at most ``window`` positions from the query (ModernBERT's local
    attention: |i - j| <= window). ``positions`` (B, T) or (T,); returns (B, 1, T, T).

    Every position also attends to itself, so a padding query far from the real tokens keeps a
    non-empty row (an empty one is NaN, and NaN times a zero weight spreads in the next layer)."""
    p = positions if positions.dim() == 2 else positions[None]
    near = (p[:, :, None] - p[:, None, :]).abs() <= window  # (B, T, T)
    T = near.shape[-1]
    itself = torch.eye(T, dtype=torch.bool, device=near.device)
    return (mask & near[:, None]) | itself
