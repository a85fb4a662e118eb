"""GPT (Radford et al., 2018): a left-to-right Transformer language model, fine-tuned with a linear head.

The architecture is GPT-2's (Radford et al., 2019), exactly as ``transformers``'
``GPT2LMHeadModel`` computes it, so a checkpoint exports to and loads from a
Hugging Face GPT-2 directory (``models/gpt_checkpoint.py``; a parity test checks
logits both ways): learned token and position embeddings, pre-LayerNorm blocks
(x + attn(ln_1(x)), then x + mlp(ln_2(x))), a final ``ln_f``, the tanh-approximate
GELU (``gelu_new``), attention scaled by 1/sqrt(head size) under a causal mask,
and the language-model head tied to the token embeddings.

Fine-tuning follows GPT-1: the input is ``start A delim B extract`` and a linear
head reads the extract token's final state; an auxiliary language-model loss on
the input, weighted by ``lm_loss_weight`` (GPT-1 used 0.5; 0 = off), is added to
the task's loss. Tagging and spans put a linear layer on every token's state.

Deviations from GPT-1, all deliberate:

* GPT-2's pre-LayerNorm block and residual-scaled initialisation (N(0, 0.02),
  the output projections of each block by 1/sqrt(2 x layers)) instead of GPT-1's
  post-LayerNorm: it is the arrangement ``transformers`` holds exactly, and it
  trains more stably at small scale;
* the start, delimiter and extract tokens are the pipeline tokenizer's [CLS],
  [SEP] and final [SEP] (the encoding every task kind already produces), not three
  tokens added at fine-tuning: the pretraining stream contains them, so their
  embeddings are trained;
* segment (token type) ids are ignored, as in GPT-1 (transformers' GPT-2 would
  add ``wte(token_type_ids)``; exports are checked without them);
* attention is ``torch.nn.functional.scaled_dot_product_attention`` with
  ``is_causal=True``; padding is on the right, so no real token attends to it, and
  the extract token is the last real token of each row;
* on CPU, dropout multiplies by a keep-mask drawn from int16 random numbers, and training-time
  attention with dropout runs the causal softmax/dropout/matmul explicitly
  (``models/dropout.py``, as BERT's); GPUs use ``F.dropout`` and fused SDPA kernels;
* the classification head has no bias, as transformers' ``GPT2ForSequenceClassification``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertpipe.models.dropout import Dropout, attention
from bertpipe.models.heads import EncoderOutputs, SequenceHead, SpanHead, TokenHead, last_token
from bertpipe.models.vocab_loss import vocab_cross_entropy_and_argmax

# name -> (layers, width); heads = width / 64, as BERT's sizes (models/bert.py)
SIZES = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "base": (12, 768)}


@dataclass
class GPTConfig:
    """Hyperparameters, with the field names of transformers' ``GPT2Config``."""

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    """Feed-forward width; None = 4 x n_embd."""
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    pad_token_id: int = 0
    id2label: dict[str, str] | None = None
    problem_type: str | None = None
    lm_loss_weight: float = 0.0
    """Fine-tuning: weight of the auxiliary language-model loss (a recipe, not written to config.json)."""

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_head ({self.n_head}) must divide n_embd ({self.n_embd}): GPT-2 splits the "
                "width evenly across heads"
            )

    @property
    def num_labels(self) -> int:
        return len(self.id2label) if self.id2label else 2

    @property
    def inner(self) -> int:
        return self.n_inner or 4 * self.n_embd


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's tanh approximation of GELU."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class CausalSelfAttention(nn.Module):
    """Multi-head attention where position t attends to positions <= t."""

    def __init__(self, c: GPTConfig):
        super().__init__()
        self.n_head = c.n_head
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd)  # q, k, v
        self.c_proj = nn.Linear(c.n_embd, c.n_embd)
        self.attn_pdrop = c.attn_pdrop
        self.resid_dropout = Dropout(c.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.c_attn(x).split(D, dim=2)  # 3 x (B, T, D)
        q, k, v = (t.view(B, T, self.n_head, D // self.n_head).transpose(1, 2) for t in (q, k, v))
        p = self.attn_pdrop if self.training else 0.0
        y = attention(q, k, v, None, p, is_causal=True)  # (B, nh, T, hs)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, D)))  # (B, T, D)


class MLP(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(c.n_embd, c.inner)
        self.c_proj = nn.Linear(c.inner, c.n_embd)
        self.dropout = Dropout(c.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(gelu_new(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon)
        self.attn = CausalSelfAttention(c)
        self.ln_2 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon)
        self.mlp = MLP(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPTModel(nn.Module):
    """Embeddings, blocks, final LayerNorm (transformers' ``GPT2Model``)."""

    def __init__(self, c: GPTConfig):
        super().__init__()
        self.config = c
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.n_positions, c.n_embd)
        self.drop = Dropout(c.embd_pdrop)
        self.h = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon)

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[1]
        if self.config.n_positions < T:
            raise ValueError(f"{T} tokens exceed n_positions ({self.config.n_positions})")
        pos = torch.arange(T, device=input_ids.device)
        x = self.drop(self.wte(input_ids) + self.wpe(pos))  # (B, T, D)
        for block in self.h:
            x = block(x)
        return self.ln_f(x)  # (B, T, D)

    def lm_logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.wte.weight)  # tied head: (..., V)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> EncoderOutputs:
        """Per-token states, the extract token's state, and the auxiliary LM loss (if weighted)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        h = self.hidden_states(input_ids)
        aux = None
        if self.config.lm_loss_weight and self.training:
            aux = (
                self.config.lm_loss_weight
                * next_token_loss(self.lm_logits, h, input_ids, attention_mask)[0]
            )
        return EncoderOutputs(h, last_token(h, attention_mask), aux)


def next_token_loss(logits_of, h, input_ids, attention_mask):
    """Cross-entropy of predicting token t+1 from the state at t, over real tokens.

    Returns (loss, logits (N, V), targets (N,), the logits' argmax (N,))."""
    valid = attention_mask.bool()
    sel = valid[:, :-1] & valid[:, 1:]  # (B, T-1)
    logits = logits_of(h[:, :-1][sel])  # (N, V)
    targets = input_ids[:, 1:][sel]
    loss, predictions = vocab_cross_entropy_and_argmax(logits, targets)
    return loss, logits, targets, predictions


def init_weights(model: nn.Module, c: GPTConfig) -> None:
    """GPT-2's initialisation: N(0, 0.02), zero biases, unit LayerNorms, residual projections
    scaled by 1/sqrt(2 x n_layer)."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, c.initializer_range)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, (CausalSelfAttention, MLP)):
            nn.init.normal_(m.c_proj.weight, 0.0, c.initializer_range / math.sqrt(2 * c.n_layer))


@dataclass
class LMOutputs:
    loss: torch.Tensor | None
    logits: torch.Tensor
    """(N, V) the predicted positions (with ``attention_mask``), else (B, T, V)."""
    targets: torch.Tensor | None
    predictions: torch.Tensor | None = None
    """(N,): the logits' argmax at the predicted positions."""


class GPTLMHeadModel(nn.Module):
    """The pretraining network: next-token prediction with the tied head."""

    loading_info: dict[str, list[str]]

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = GPTModel(config)
        init_weights(self, config)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> LMOutputs:
        h = self.transformer.hidden_states(input_ids)
        if attention_mask is None:
            return LMOutputs(None, self.transformer.lm_logits(h), None)  # (B, T, V)
        return LMOutputs(*next_token_loss(self.transformer.lm_logits, h, input_ids, attention_mask))

    def next_token_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, V): the prediction after each row's last token (rows unpadded)."""
        return self.transformer.lm_logits(self.transformer.hidden_states(input_ids)[:, -1])


class GPTForSequenceClassification(SequenceHead):
    def __init__(self, config: GPTConfig):
        super().__init__(config, GPTModel(config), config.n_embd, config.resid_pdrop, bias=False)
        init_weights(self, config)


class GPTForTokenClassification(TokenHead):
    def __init__(self, config: GPTConfig):
        super().__init__(config, GPTModel(config), config.n_embd, config.resid_pdrop)
        init_weights(self, config)


class GPTForQuestionAnswering(SpanHead):
    def __init__(self, config: GPTConfig):
        super().__init__(config, GPTModel(config), config.n_embd, config.resid_pdrop)
        init_weights(self, config)


def flops_per_token(c: GPTConfig, seq_len: int, predicted_fraction: float = 1.0) -> float:
    """Training FLOPs per token (3 x forward, 2 per multiply-add): the blocks' matmuls
    (4 D^2 attention projections + 2 D x inner feed-forward per layer), attention scores and
    mixing over ``seq_len`` positions, and the tied head over the whole vocabulary."""
    L, D, V = c.n_layer, c.n_embd, c.vocab_size
    forward = 2 * L * (4 * D * D + 2 * D * c.inner) + 2 * 2 * L * seq_len * D + 2 * D * V
    return 3.0 * forward
