"""A modern encoder (ModernBERT's architecture, Warner et al., 2024) in plain torch, Hugging Face names.

Owns the network, its sizes and its initialisation (``ModernPreTrainedModel.init_weights``,
the one place). Parameter and config names are those of ``transformers``' ModernBERT
classes, so ``models/modern_checkpoint.py`` (its Hugging Face format, beside it) writes
directories ``ModernBertForMaskedLM`` and friends load, with equal logits.

What differs from BERT (``models/bert.py``), all ModernBERT's choices:

* pre-LayerNorm blocks (x + f(norm(x))), a final LayerNorm, and no norm before the first
  layer's attention (the embedding norm serves); LayerNorms without bias, linear layers
  without bias (``attention_bias``, ``mlp_bias``, ``classifier_bias`` false);
* GeGLU feed-forward: Wo(gelu(a) * g) with [a, g] = Wi(x), Wi of width 2 x intermediate;
* rotary position embeddings on queries and keys (no position or token-type embeddings:
  a pair is told apart by its [SEP] only), theta 160,000 on global layers and 10,000 on
  local ones;
* alternating attention: every ``global_attn_every_n_layers``-th layer (from the first)
  attends globally, the others to keys at most ``local_attention / 2`` positions away;
* padding-free by construction: the embeddings, norms, projections and feed-forward run
  on the real tokens only, (N, H) with N = the non-padding positions of the batch; only
  attention scatters them back into (B, T) rows, where padding is masked. Packed rows
  (``data/packing.py``: several instances per row, ``position_ids`` restarting and
  ``instance_ids`` for a block-diagonal mask) work the same way;
* pretraining is masked-LM only (no NSP head); the head projects only labelled positions;
* truncated-normal initialisation (cutoff 2 std): 0.02 for input projections and
  embeddings, 0.02 / sqrt(2 x layers) for output projections, hidden^-0.5 for classifiers.

Deviations from transformers' implementation: attention is torch's SDPA with a boolean
mask (the same softmax(QK^T / sqrt(d)) V), and on CPU dropout (off in ModernBERT's
recipe) is ``models/dropout.py``'s, as BERT's; outputs at padding positions are zeros
(transformers computes values there that nothing reads); the sequence head takes the
[CLS] of each instance (``classifier_pooling: cls``) or the mean of real tokens (``mean``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from bertpipe.labels import IGNORE_INDEX
from bertpipe.models.bert import SIZES, PreTrainingOutputs
from bertpipe.models.dropout import Dropout, attention
from bertpipe.models.heads import TaskOutputs, sequence_loss, span_loss, token_loss
from bertpipe.models.masks import block_mask, padding_mask, sliding_window
from bertpipe.models.vocab_loss import vocab_cross_entropy_and_argmax


@dataclass
class ModernConfig:
    """Hyperparameters, with the field names of transformers' ``ModernBertConfig``."""

    vocab_size: int = 30522
    hidden_size: int = 768
    intermediate_size: int = 1152
    num_hidden_layers: int = 22
    num_attention_heads: int = 12
    hidden_activation: str = "gelu"
    max_position_embeddings: int = 8192
    initializer_range: float = 0.02
    initializer_cutoff_factor: float = 2.0
    norm_eps: float = 1e-5
    norm_bias: bool = False
    pad_token_id: int = 0
    attention_bias: bool = False
    attention_dropout: float = 0.0
    global_attn_every_n_layers: int = 3
    local_attention: int = 128
    global_rope_theta: float = 160000.0
    local_rope_theta: float = 10000.0
    embedding_dropout: float = 0.0
    mlp_bias: bool = False
    mlp_dropout: float = 0.0
    decoder_bias: bool = True
    classifier_pooling: str = "cls"
    classifier_dropout: float = 0.0
    classifier_bias: bool = False
    classifier_activation: str = "gelu"
    id2label: dict[str, str] | None = None
    problem_type: str | None = None
    layer_types: list[str] = field(default_factory=list)
    """Per layer ``full_attention`` or ``sliding_attention``; empty = from ``global_attn_every_n_layers``."""

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.hidden_activation not in ("gelu", "gelu_python"):
            raise ValueError(f"hidden_activation {self.hidden_activation!r}: only exact GELU")
        if not self.layer_types:
            self.layer_types = [
                "sliding_attention" if i % self.global_attn_every_n_layers else "full_attention"
                for i in range(self.num_hidden_layers)
            ]

    @property
    def num_labels(self) -> int:
        return len(self.id2label) if self.id2label else 2

    @classmethod
    def from_size(cls, size: str, vocab_size: int, **overrides) -> ModernConfig:
        """BERT's published sizes (``bert.SIZES``), heads of 64, and a GeGLU width of 8H/3
        rounded up to 64: the feed-forward parameters of BERT's 4H GELU layer."""
        if size not in SIZES:
            raise ValueError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
        layers, hidden = SIZES[size]
        sized = {
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": hidden // 64,
            "intermediate_size": -(-8 * hidden // 3 // 64) * 64,
        }
        return cls(vocab_size=vocab_size, **{**sized, **overrides})


# ------------------------------------------------------------------------------ blocks


class Unpadded:
    """Where a batch's real tokens sit: (B, T) rows <-> (N, .) real tokens."""

    def __init__(self, attention_mask: torch.Tensor | None, B: int, T: int):
        self.B, self.T = B, T
        self.index = None
        if attention_mask is not None:
            # One host sync, nonzero's (its size is the data's): inherent to unpadding, as
            # the varlen kernels' cu_seqlens. Its size says whether anything was padding.
            index = attention_mask.bool().flatten().nonzero().squeeze(1)
            self.index = None if index.numel() == B * T else index

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (N, D)"""
        x = x.flatten(0, 1)
        return x if self.index is None else x[self.index]

    def put(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (B, T, D), zeros at padding"""
        if self.index is None:
            return x.view(self.B, self.T, -1)
        out = x.new_zeros(self.B * self.T, x.shape[-1])
        return out.index_copy(0, self.index, x).view(self.B, self.T, -1)


def rotary(positions: torch.Tensor, dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of the rotary angles, (B, T, dim) in fp32 (transformers' default RoPE)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, device=positions.device).float() / dim))
    angles = positions[..., None].float() * inv_freq  # (B, T, dim/2)
    angles = torch.cat((angles, angles), dim=-1)  # (B, T, dim)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of (B, nh, T, hd) queries or keys, computed in fp32."""
    xf = x.float()
    half = xf.shape[-1] // 2
    rotated = torch.cat((-xf[..., half:], xf[..., :half]), dim=-1)
    return (xf * cos[:, None] + rotated * sin[:, None]).to(x.dtype)


class ModernBertEmbeddings(nn.Module):
    """Token embeddings, LayerNorm, dropout (positions enter through the rotary angles)."""

    def __init__(self, c: ModernConfig):
        super().__init__()
        self.tok_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.norm_eps, bias=c.norm_bias)
        self.drop = Dropout(c.embedding_dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.drop(self.norm(self.tok_embeddings(input_ids)))


class ModernBertAttention(nn.Module):
    """Multi-head self-attention with rotary queries/keys on unpadded tokens."""

    def __init__(self, c: ModernConfig):
        super().__init__()
        self.n_head, self.head_dim = c.num_attention_heads, c.hidden_size // c.num_attention_heads
        self.Wqkv = nn.Linear(c.hidden_size, 3 * c.hidden_size, bias=c.attention_bias)
        self.Wo = nn.Linear(c.hidden_size, c.hidden_size, bias=c.attention_bias)
        self.dropout_p = c.attention_dropout
        self.out_drop = Dropout(c.attention_dropout)

    def forward(
        self, x: torch.Tensor, rows: Unpadded, mask: torch.Tensor | None, cos, sin
    ) -> torch.Tensor:
        B, T, nh, hd = rows.B, rows.T, self.n_head, self.head_dim
        qkv = rows.put(self.Wqkv(x)).view(B, T, 3, nh, hd)  # (N, 3H) -> (B, T, 3, nh, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, T, hd)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        p = self.dropout_p if self.training else 0.0
        y = attention(q, k, v, mask, p)  # (B, nh, T, hd)
        y = rows.take(y.transpose(1, 2).reshape(B, T, nh * hd))  # (N, H)
        return self.out_drop(self.Wo(y))


class ModernBertMLP(nn.Module):
    """GeGLU: Wo(gelu(a) * g), [a, g] = Wi(x)."""

    def __init__(self, c: ModernConfig):
        super().__init__()
        self.Wi = nn.Linear(c.hidden_size, 2 * c.intermediate_size, bias=c.mlp_bias)
        self.drop = Dropout(c.mlp_dropout)
        self.Wo = nn.Linear(c.intermediate_size, c.hidden_size, bias=c.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g = self.Wi(x).chunk(2, dim=-1)  # (N, I) each
        return self.Wo(self.drop(F.gelu(a) * g))


class ModernBertEncoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x)); layer 0 has no attention norm."""

    def __init__(self, c: ModernConfig, index: int):
        super().__init__()
        self.attn_norm = (
            nn.Identity()
            if index == 0
            else nn.LayerNorm(c.hidden_size, eps=c.norm_eps, bias=c.norm_bias)
        )
        self.attn = ModernBertAttention(c)
        self.mlp_norm = nn.LayerNorm(c.hidden_size, eps=c.norm_eps, bias=c.norm_bias)
        self.mlp = ModernBertMLP(c)

    def forward(self, x: torch.Tensor, rows: Unpadded, mask, cos, sin) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rows, mask, cos, sin)
        return x + self.mlp(self.mlp_norm(x))


@dataclass
class ModernOutputs:
    last_hidden_state: torch.Tensor
    """(B, T, H), zeros at padding."""
    tokens: torch.Tensor
    """(N, H): the real tokens' states, in row-major (batch, position) order."""
    rows: Unpadded


class ModernPreTrainedModel(nn.Module):
    """What every modern network shares: its config and ModernBERT's initialisation."""

    config: ModernConfig
    loading_info: dict[str, list[str]]

    def init_weights(self) -> None:
        c = self.config
        a = c.initializer_cutoff_factor

        def normal(w: torch.Tensor, std: float) -> None:
            nn.init.trunc_normal_(w, 0.0, std, -a * std, a * std)

        out_std = c.initializer_range / math.sqrt(2.0 * c.num_hidden_layers)
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, ModernBertEmbeddings):
                normal(m.tok_embeddings.weight, c.initializer_range)
            elif isinstance(m, ModernBertAttention | ModernBertMLP):
                w_in = m.Wi.weight if isinstance(m, ModernBertMLP) else m.Wqkv.weight
                normal(w_in, c.initializer_range)
                normal(m.Wo.weight, out_std)
            elif isinstance(m, ModernBertPredictionHead):
                normal(m.dense.weight, out_std)
        classifier = getattr(self, "classifier", None)
        if isinstance(classifier, nn.Linear):
            normal(classifier.weight, c.hidden_size**-0.5)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the parameters the architecture ties (the MLM decoder, below)."""


class ModernBertModel(ModernPreTrainedModel):
    """The encoder: embeddings, N pre-norm layers, final norm; padding-free inside."""

    def __init__(self, config: ModernConfig):
        super().__init__()
        self.config = config
        self.embeddings = ModernBertEmbeddings(config)
        self.layers = nn.ModuleList(
            ModernBertEncoderLayer(config, i) for i in range(config.num_hidden_layers)
        )
        self.final_norm = nn.LayerNorm(
            config.hidden_size, eps=config.norm_eps, bias=config.norm_bias
        )
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        instance_ids: torch.Tensor | None = None,
    ) -> ModernOutputs:
        """``token_type_ids`` are accepted and unused (the architecture has none). Packed rows:
        ``position_ids`` and ``instance_ids`` (R, T), as ``bert.BertModel``."""
        c = self.config
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).expand(B, T)
        if instance_ids is not None:
            full = block_mask(instance_ids)  # (B, 1, T, T)
        elif attention_mask is not None:
            full = padding_mask(attention_mask)  # (B, 1, 1, T)
        else:
            full = torch.ones(B, 1, 1, T, dtype=torch.bool, device=input_ids.device)
        masks = {
            "full_attention": full,
            "sliding_attention": sliding_window(full, position_ids, c.local_attention // 2),
        }
        hd = c.hidden_size // c.num_attention_heads
        angles = {
            "full_attention": rotary(position_ids, hd, c.global_rope_theta),
            "sliding_attention": rotary(position_ids, hd, c.local_rope_theta),
        }
        rows = Unpadded(attention_mask, B, T)
        x = rows.take(self.embeddings(input_ids))  # (N, H): real tokens only
        for layer, kind in zip(self.layers, c.layer_types, strict=True):
            x = layer(x, rows, masks[kind], *angles[kind])
        x = self.final_norm(x)
        return ModernOutputs(rows.put(x), x, rows)


class ModernBertPredictionHead(nn.Module):
    """dense, GELU, LayerNorm: before the MLM decoder and every task classifier."""

    def __init__(self, c: ModernConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size, bias=c.classifier_bias)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.norm_eps, bias=c.norm_bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(F.gelu(self.dense(h)))


# -------------------------------------------------------------------------------- models


class ModernBertForMaskedLM(ModernPreTrainedModel):
    """The encoder with the masked-LM head (decoder tied to the token embeddings)."""

    def __init__(self, config: ModernConfig):
        super().__init__()
        self.config = config
        self.model = ModernBertModel(config)
        self.head = ModernBertPredictionHead(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=config.decoder_bias)
        self.init_weights()

    def tie_weights(self) -> None:
        self.decoder.weight = self.model.embeddings.tok_embeddings.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        nsp_labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        instance_ids: torch.Tensor | None = None,
        cls_index: torch.Tensor | None = None,
    ) -> PreTrainingOutputs:
        """BERT's pretraining signature; ``nsp_labels`` must be None (MLM only) and
        ``cls_index`` is unused. Without labels, logits for every position (B, T, V)."""
        if nsp_labels is not None:
            raise ValueError("the modern family has no next-sentence head (MLM only)")
        out = self.model(input_ids, None, attention_mask, position_ids, instance_ids)
        if mlm_labels is None:
            logits = self.decoder(self.head(out.last_hidden_state))  # (B, T, V)
            return PreTrainingOutputs(None, None, None, logits, None, logits.new_zeros(0, 2))
        labels = out.rows.take(mlm_labels[..., None]).squeeze(-1)  # (N,)
        selected = labels != IGNORE_INDEX
        logits = self.decoder(self.head(out.tokens[selected]))  # (M, V): labelled positions only
        targets = labels[selected]
        loss, predictions = vocab_cross_entropy_and_argmax(logits, targets)
        nsp = logits.new_zeros(0, 2)
        return PreTrainingOutputs(loss, loss, None, None, targets, nsp, predictions)


class ModernBertForSequenceClassification(ModernPreTrainedModel):
    """Classification or regression (``num_labels == 1``) on the [CLS] state or the mean."""

    def __init__(self, config: ModernConfig):
        super().__init__()
        self.config = config
        self.model = ModernBertModel(config)
        self.head = ModernBertPredictionHead(config)
        self.drop = Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights()

    def forward(
        self, input_ids, token_type_ids=None, attention_mask=None, labels=None
    ) -> TaskOutputs:
        h = self.model(input_ids, None, attention_mask).last_hidden_state  # (B, T, H)
        if self.config.classifier_pooling == "mean":
            m = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            pooled = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True)  # (B, H)
        else:
            pooled = h[:, 0]  # (B, H)
        logits = self.classifier(self.drop(self.head(pooled)))  # (B, num_labels)
        return TaskOutputs(sequence_loss(logits, labels, self.config.num_labels), logits)


class ModernBertForTokenClassification(ModernPreTrainedModel):
    """A label per token."""

    def __init__(self, config: ModernConfig):
        super().__init__()
        self.config = config
        self.model = ModernBertModel(config)
        self.head = ModernBertPredictionHead(config)
        self.drop = Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights()

    def forward(
        self, input_ids, token_type_ids=None, attention_mask=None, labels=None
    ) -> TaskOutputs:
        h = self.model(input_ids, None, attention_mask).last_hidden_state
        logits = self.classifier(self.drop(self.head(h)))  # (B, T, num_labels)
        return TaskOutputs(token_loss(logits, labels), logits)


class ModernBertForQuestionAnswering(ModernPreTrainedModel):
    """Span extraction: a start and an end logit per token."""

    def __init__(self, config: ModernConfig):
        super().__init__()
        self.config = config
        self.model = ModernBertModel(config)
        self.head = ModernBertPredictionHead(config)
        self.drop = Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, 2)
        self.init_weights()

    def forward(
        self,
        input_ids,
        token_type_ids=None,
        attention_mask=None,
        start_positions=None,
        end_positions=None,
    ) -> TaskOutputs:
        h = self.model(input_ids, None, attention_mask).last_hidden_state
        logits = self.classifier(self.drop(self.head(h)))  # (B, T, 2)
        return TaskOutputs(span_loss(logits, start_positions, end_positions), logits)


def flops_per_token(c: ModernConfig, seq_len: int, masked_fraction: float) -> float:
    """Training FLOPs per real token: 6 x matmul params (attention 4H^2, GeGLU 3HI per layer)
    + attention scores over the keys each layer sees + the MLM head on masked tokens."""
    L, H, F_, V = c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.vocab_size
    keys = sum(
        seq_len if t == "full_attention" else min(seq_len, c.local_attention + 1)
        for t in c.layer_types
    )
    dense = 6 * L * (4 * H * H + 3 * H * F_) + 12 * H * keys
    head = 6 * masked_fraction * (H * H + H * V)
    return dense + head
