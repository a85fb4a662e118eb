"""What pretraining and fine-tuning build the same way from params.

Owns two mappings both training stages share, so that fine-tuning does not
depend on pretraining's code: the ``model`` section as a :class:`BertConfig`
(what pretraining and the from-scratch baseline start from) and the
``precision: auto`` rule for the Lightning Trainer.
"""

from __future__ import annotations

import torch

from bertpipe.config import ModelConfig
from bertpipe.model import BertConfig


def encoder_config(model_cfg: ModelConfig, vocab_size: int, pad_id: int) -> BertConfig:
    """The ``model`` section's architecture with a tokenizer's vocabulary size and [PAD] id."""
    return BertConfig.from_size(
        model_cfg.size, vocab_size, hidden_dropout_prob=model_cfg.hidden_dropout_prob,
        attention_probs_dropout_prob=model_cfg.attention_probs_dropout_prob,
        max_position_embeddings=model_cfg.max_position_embeddings, pad_token_id=pad_id,
        position_init=model_cfg.position_init, position_init_std=model_cfg.position_init_std)


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: bf16-mixed where the hardware runs bf16 fast, else 32-true."""
    if precision != "auto":
        return precision
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed"
        return "16-mixed"
    if accelerator == "tpu":
        return "bf16-true"
    return "bf16-mixed" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "32-true"
