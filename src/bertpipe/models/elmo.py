"""ELMo (Peters et al., 2018): a bidirectional LSTM language model whose layers are mixed into a task model.

Pretraining (``ELMoForPreTraining``): a forward LSTM language model predicts token
t+1 from tokens 1..t, a backward one predicts token t-1 from tokens t..n; the two
share the token embeddings and the softmax, and the loss is the mean of the two
directions' cross-entropies (the paper maximises the sum of both log-likelihoods).
Fine-tuning (``ELMoFor*``): the task-specific scalar mix
ELMo_t = gamma * sum_j softmax(s)_j h_{t,j} over layer 0 (the token embedding,
repeated for both directions) and every biLSTM layer ([forward; backward]) feeds
the task model: the recurrent baseline of ``models/recurrent.py`` (``task_encoder:
recurrent``) or a linear head on the mix (``linear``). The biLM is frozen unless
``freeze_bilm`` is false.

Deviations from the paper, all deliberate:

* tokens are the pipeline's WordPiece ids with a learned embedding, not a
  character CNN over words (one vocabulary for every family; no highway layers);
* the LSTMs have no 4096-to-512 cell projection: each direction's hidden size
  equals the embedding size, so layer 0 and every LSTM layer have the same width
  (2 x ``hidden_size``) for the mix;
* the backward direction reads each sequence reversed within its length (padding
  stays at the end), so it never sees the tokens before t;
* the softmax covers the whole vocabulary (no sampled softmax) and layer norm of
  the mixed layers is not used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertpipe.models.dropout import Dropout
from bertpipe.models.heads import EncoderOutputs, SequenceHead, SpanHead, TokenHead, lengths
from bertpipe.models.recurrent import (
    AdditiveAttentionPooling,
    RecurrentConfig,
    SequenceEncoder,
    init_weights,
    pool,
)
from bertpipe.models.vocab_loss import vocab_cross_entropy_and_argmax


@dataclass
class ELMoConfig:
    vocab_size: int = 30522
    hidden_size: int = 256
    """Embedding size and LSTM hidden size per direction."""
    num_layers: int = 2
    dropout: float = 0.1
    pad_token_id: int = 0
    initializer_range: float = 0.02
    # fine-tuning (the task model on top of the mix)
    task_encoder: str = "recurrent"
    """recurrent (a biLSTM with attention pooling over the mix) or linear (pooling, then a linear head)."""
    task_hidden_size: int = 128
    task_pooling: str = "attention"
    freeze_bilm: bool = True
    id2label: dict[str, str] | None = None
    problem_type: str | None = None
    model_type: str = "bertpipe-elmo"

    def __post_init__(self) -> None:
        if self.task_encoder not in ("recurrent", "linear"):
            raise ValueError(f"task_encoder {self.task_encoder!r}: choose recurrent or linear")

    @property
    def num_labels(self) -> int:
        return len(self.id2label) if self.id2label else 2

    @property
    def task_config(self) -> RecurrentConfig:
        return RecurrentConfig(
            cell="lstm",
            hidden_size=self.task_hidden_size,
            bidirectional=True,
            pooling=self.task_pooling,
            attention_dim=self.task_hidden_size,
            dropout=self.dropout,
        )

    @property
    def output_size(self) -> int:
        if self.task_encoder == "recurrent":
            return self.task_config.output_size
        return 2 * self.hidden_size


def reverse_within_length(x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Each row's first n[b] positions reversed, padding left in place: (B, T, ...) -> same."""
    B, T = x.shape[:2]
    t = torch.arange(T, device=x.device).expand(B, T)  # (B, T)
    idx = torch.where(t < n[:, None], n[:, None] - 1 - t, t)  # (B, T)
    return x.gather(1, idx.view(B, T, *([1] * (x.dim() - 2))).expand_as(x))


class BiLM(nn.Module):
    """Shared embedding, a forward and a backward LSTM stack (with residual connections)."""

    def __init__(self, c: ELMoConfig):
        super().__init__()
        self.config = c
        H = c.hidden_size
        self.embeddings = nn.Embedding(c.vocab_size, H, padding_idx=c.pad_token_id)
        self.forward_layers = nn.ModuleList(
            nn.LSTM(H, H, batch_first=True) for _ in range(c.num_layers)
        )
        self.backward_layers = nn.ModuleList(
            nn.LSTM(H, H, batch_first=True) for _ in range(c.num_layers)
        )
        self.dropout = Dropout(c.dropout)
        self.softmax_bias = nn.Parameter(torch.zeros(c.vocab_size))  # softmax weight = embeddings

    def _direction(self, x: torch.Tensor, layers: nn.ModuleList) -> list[torch.Tensor]:
        outs = []
        for j, lstm in enumerate(layers):
            h, _ = lstm(x)  # (B, T, H)
            x = self.dropout(h) + (x if j > 0 else 0)  # residual between LSTM layers, as ELMo
            outs.append(x)
        return outs

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Layer 0 (B, T, H) and per layer the forward and backward states, each (B, T, H)."""
        n = lengths(attention_mask).clamp(min=1)
        e = self.dropout(self.embeddings(input_ids))  # (B, T, H)
        fwd = self._direction(e, self.forward_layers)  # causal: right padding is never read
        bwd = [
            reverse_within_length(h, n)
            for h in self._direction(reverse_within_length(e, n), self.backward_layers)
        ]
        return e, fwd, bwd

    def layers(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """The L + 1 layers the mix weighs, each (B, T, 2H)."""
        e, fwd, bwd = self(input_ids, attention_mask)
        return [torch.cat([e, e], -1), *(torch.cat(p, -1) for p in zip(fwd, bwd, strict=True))]

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.embeddings.weight, self.softmax_bias)  # (N, V)


@dataclass
class BiLMOutputs:
    loss: torch.Tensor
    forward_loss: torch.Tensor
    backward_loss: torch.Tensor
    forward_logits: torch.Tensor
    """(N, V): one row per predicted position of the forward LM."""
    forward_targets: torch.Tensor
    backward_logits: torch.Tensor
    backward_targets: torch.Tensor
    forward_predictions: torch.Tensor
    """(N,): the argmax of ``forward_logits``; ``backward_predictions`` likewise."""
    backward_predictions: torch.Tensor


class ELMoForPreTraining(nn.Module):
    """The biLM with its two language-model losses."""

    loading_info: dict[str, list[str]]

    def __init__(self, config: ELMoConfig):
        super().__init__()
        self.config = config
        self.bilm = BiLM(config)
        init_weights(self, config.initializer_range)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> BiLMOutputs:
        _, fwd, bwd = self.bilm(input_ids, attention_mask)
        valid = attention_mask.bool()
        # forward: state at t predicts token t+1; backward: state at t predicts token t-1
        f_sel = valid[:, :-1] & valid[:, 1:]  # (B, T-1)
        f_logits = self.bilm.logits(fwd[-1][:, :-1][f_sel])  # (N, V)
        f_targets = input_ids[:, 1:][f_sel]
        b_logits = self.bilm.logits(bwd[-1][:, 1:][f_sel])  # (N, V)
        b_targets = input_ids[:, :-1][f_sel]
        f_loss, f_pred = vocab_cross_entropy_and_argmax(f_logits, f_targets)
        b_loss, b_pred = vocab_cross_entropy_and_argmax(b_logits, b_targets)
        return BiLMOutputs(
            loss=(f_loss + b_loss) / 2,
            forward_loss=f_loss,
            backward_loss=b_loss,
            forward_logits=f_logits,
            forward_targets=f_targets,
            backward_logits=b_logits,
            backward_targets=b_targets,
            forward_predictions=f_pred,
            backward_predictions=b_pred,
        )

    def next_token_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, V): the forward LM's prediction after each row's last token (rows unpadded)."""
        _, fwd, _ = self.bilm(input_ids, torch.ones_like(input_ids))
        return self.bilm.logits(fwd[-1][:, -1])


class ScalarMix(nn.Module):
    """gamma * sum_j softmax(s)_j h_j: starts uniform (s = 0) with gamma = 1."""

    def __init__(self, n_layers: int):
        super().__init__()
        self.scalars = nn.Parameter(torch.zeros(n_layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        w = self.scalars.softmax(0)
        return self.gamma * sum(w[j] * h for j, h in enumerate(layers))  # (B, T, 2H)


class ELMoEncoder(nn.Module):
    """biLM layers -> scalar mix -> the task encoder (recurrent with pooling, or pooling alone)."""

    def __init__(self, c: ELMoConfig):
        super().__init__()
        self.config = c
        self.bilm = BiLM(c)
        self.mix = ScalarMix(c.num_layers + 1)
        self.task = (
            SequenceEncoder(c.task_config, 2 * c.hidden_size)
            if c.task_encoder == "recurrent"
            else None
        )
        self.attention: AdditiveAttentionPooling | None = (
            AdditiveAttentionPooling(2 * c.hidden_size, c.task_hidden_size)
            if self.task is None and c.task_pooling == "attention"
            else None
        )
        if c.freeze_bilm:
            self.bilm.requires_grad_(False)

    def forward(self, input_ids, token_type_ids, attention_mask) -> EncoderOutputs:
        if self.config.freeze_bilm:
            self.bilm.eval()  # frozen: no dropout inside it either
            with torch.no_grad():
                layers = self.bilm.layers(input_ids, attention_mask)
        else:
            layers = self.bilm.layers(input_ids, attention_mask)
        x = self.mix(layers)  # (B, T, 2H)
        if self.task is not None:
            return self.task(x, attention_mask)
        attention = self.attention if isinstance(self.attention, nn.Module) else None
        return EncoderOutputs(x, pool(self.config.task_pooling, x, attention_mask, attention))


class ELMoForSequenceClassification(SequenceHead):
    def __init__(self, config: ELMoConfig):
        super().__init__(config, ELMoEncoder(config), config.output_size, config.dropout)
        init_weights(self, config.initializer_range)


class ELMoForTokenClassification(TokenHead):
    def __init__(self, config: ELMoConfig):
        super().__init__(config, ELMoEncoder(config), config.output_size, config.dropout)
        init_weights(self, config.initializer_range)


class ELMoForQuestionAnswering(SpanHead):
    def __init__(self, config: ELMoConfig):
        super().__init__(config, ELMoEncoder(config), config.output_size, config.dropout)
        init_weights(self, config.initializer_range)


def flops_per_token(c: ELMoConfig, seq_len: int = 0, predicted_fraction: float = 1.0) -> float:
    """Training FLOPs per token (3 x forward) of the biLM: per direction, the LSTM layers'
    matmuls (4 gates x H x (H + H), 2 per multiply-add) and the full-vocabulary softmax at the
    ``predicted_fraction`` of positions that have a neighbour to predict."""
    H, L, V = c.hidden_size, c.num_layers, c.vocab_size
    per_direction = L * 2 * 4 * H * (H + H) + predicted_fraction * 2 * H * V
    return 3.0 * 2 * per_direction
