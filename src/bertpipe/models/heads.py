"""Task heads shared by the families added after BERT (gpt, elmo, rnn/lstm/gru).

Owns the three heads a task kind asks for (``sequence``: a label or score per
example from the encoder's pooled state; ``token``: a label per token; ``span``:
start/end logits) and their losses, around any *encoder*: a module whose
``forward(input_ids, token_type_ids, attention_mask)`` returns ``EncoderOutputs``.
A family file subclasses each head in three lines, choosing its encoder; how the
encoder pools a sequence (GPT's extract token, the recurrent families' attention)
is the encoder's business. BERT keeps its own heads in ``models/bert.py`` (their
parameter names are transformers' ``BertFor*``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertpipe.labels import IGNORE_INDEX
from bertpipe.models.dropout import Dropout


@dataclass
class EncoderOutputs:
    hidden: torch.Tensor
    """(B, T, H) one state per token."""
    pooled: torch.Tensor
    """(B, H) one state per sequence."""
    aux_loss: torch.Tensor | None = None
    """A loss the encoder adds to the task's (GPT's auxiliary language-model loss); None if off."""


@dataclass
class TaskOutputs:
    loss: torch.Tensor | None
    logits: torch.Tensor
    """(B, num_labels), (B, T, num_labels), or (B, T, 2) for spans (start, end)."""


def sequence_loss(logits: torch.Tensor, labels, num_labels: int) -> torch.Tensor | None:
    """MSE for a score (``num_labels == 1``), else cross-entropy; None without labels."""
    if labels is None:
        return None
    if num_labels == 1:
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    return F.cross_entropy(logits.float(), labels)


def token_loss(logits: torch.Tensor, labels) -> torch.Tensor | None:
    """Cross-entropy over (B, T, num_labels) logits, ignoring ``IGNORE_INDEX`` positions."""
    if labels is None:
        return None
    return F.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX
    )


def span_loss(logits: torch.Tensor, start_positions, end_positions) -> torch.Tensor | None:
    """The mean of the start and end cross-entropies over (B, T, 2) logits."""
    if start_positions is None or end_positions is None:
        return None
    start, end = logits.float().unbind(-1)
    return (F.cross_entropy(start, start_positions) + F.cross_entropy(end, end_positions)) / 2


def with_aux(loss: torch.Tensor | None, enc: EncoderOutputs) -> torch.Tensor | None:
    if loss is None or enc.aux_loss is None:
        return loss
    return loss + enc.aux_loss


class TaskHead(nn.Module):
    """What the heads share: the config (``num_labels``, ``id2label``), the encoder, dropout."""

    loading_info: dict[str, list[str]]

    def __init__(self, config, encoder: nn.Module, dropout: float):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.dropout = Dropout(dropout)

    def encode(self, input_ids, token_type_ids, attention_mask) -> EncoderOutputs:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        return self.encoder(input_ids, token_type_ids, attention_mask)


class SequenceHead(TaskHead):
    """Classification, or regression when ``num_labels == 1``, on the pooled state."""

    def __init__(self, config, encoder: nn.Module, width: int, dropout: float, bias: bool = True):
        super().__init__(config, encoder, dropout)
        self.classifier = nn.Linear(width, config.num_labels, bias=bias)

    def forward(
        self, input_ids, token_type_ids=None, attention_mask=None, labels=None
    ) -> TaskOutputs:
        enc = self.encode(input_ids, token_type_ids, attention_mask)
        logits = self.classifier(self.dropout(enc.pooled))  # (B, num_labels)
        loss = sequence_loss(logits, labels, self.config.num_labels)
        return TaskOutputs(with_aux(loss, enc), logits)


class TokenHead(TaskHead):
    """A label per token from the per-token states."""

    def __init__(self, config, encoder: nn.Module, width: int, dropout: float):
        super().__init__(config, encoder, dropout)
        self.classifier = nn.Linear(width, config.num_labels)

    def forward(
        self, input_ids, token_type_ids=None, attention_mask=None, labels=None
    ) -> TaskOutputs:
        enc = self.encode(input_ids, token_type_ids, attention_mask)
        logits = self.classifier(self.dropout(enc.hidden))  # (B, T, num_labels)
        return TaskOutputs(with_aux(token_loss(logits, labels), enc), logits)


class SpanHead(TaskHead):
    """Span extraction: a start and an end logit per token."""

    def __init__(self, config, encoder: nn.Module, width: int, dropout: float):
        super().__init__(config, encoder, dropout)
        self.qa_outputs = nn.Linear(width, 2)

    def forward(
        self,
        input_ids,
        token_type_ids=None,
        attention_mask=None,
        start_positions=None,
        end_positions=None,
    ) -> TaskOutputs:
        enc = self.encode(input_ids, token_type_ids, attention_mask)
        logits = self.qa_outputs(enc.hidden)  # (B, T, 2)
        loss = span_loss(logits, start_positions, end_positions)
        return TaskOutputs(with_aux(loss, enc), logits)


def lengths(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B,) tokens per sequence of a right-padded batch."""
    return attention_mask.long().sum(1)


def last_token(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, H) the state at each sequence's last real token (right padding)."""
    idx = (lengths(attention_mask) - 1).clamp(min=0)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]
