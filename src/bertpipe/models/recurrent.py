"""The supervised recurrent baselines: Elman RNN, LSTM and GRU encoders with attention pooling.

The "supervised neural network trained on the task alone" of the seeds' table,
trained from scratch (``finetune.inits: scratch:rnn | scratch:lstm | scratch:gru``)
over the pipeline's WordPiece vocabulary:

- the Elman RNN is exactly h_t = tanh(b + W h_{t-1} + U x_t) (``torch.nn.RNN`` with
  tanh: U = ``weight_ih``, W = ``weight_hh``, b = ``bias_ih + bias_hh``; a test
  checks the two agree), the output o_t = c + V h_t is the task head's linear layer
  and its softmax the loss; LSTM (Hochreiter & Schmidhuber, 1997, with the forget
  gate) and GRU (Cho et al., 2014) are ``torch.nn``'s cells;
- a sequence is pooled by additive attention (Bahdanau et al., 2015):
  e_t = v^T tanh(W_a h_t + b_a), alpha = softmax over the real tokens, c = sum_t alpha_t h_t;
  ``mean`` and ``max`` pooling are the alternatives;
- tagging reads the per-token states; spans a start and an end logit per token.

Deviations and choices, all deliberate:

* sentence pairs are one sequence, ``[CLS] A [SEP] B [SEP]`` as BERT reads them,
  with a learned segment embedding added to the token embedding: one encoder for
  every task kind, and attention pooling can align across the separator (the
  alternative, two encodings combined as [u; v; |u-v|; u*v], needs a pair-only
  head and is not built);
* in Bahdanau et al. the attention query is the decoder state; an encoder-only
  classifier has no decoder, so the query is a learned vector ``v`` (the form of
  Yang et al., 2016's attention pooling), which is the same additive score;
* padding is handled by packing (``pack_padded_sequence``), so the backward
  direction starts at each sequence's last real token;
* initialisation: torch's defaults for the cells (uniform +-1/sqrt(H)), N(0, 0.02)
  embeddings and linear layers, forget-gate bias 1 for the LSTM (Jozefowicz et
  al., 2015).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bertpipe.models.dropout import Dropout
from bertpipe.models.heads import EncoderOutputs, SequenceHead, SpanHead, TokenHead, lengths

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
POOLING = ("attention", "mean", "max")


@dataclass
class RecurrentConfig:
    vocab_size: int = 30522
    cell: str = "lstm"
    """rnn (Elman, tanh), lstm or gru."""
    embedding_dim: int = 128
    hidden_size: int = 128
    """Per direction."""
    num_layers: int = 1
    bidirectional: bool = True
    pooling: str = "attention"
    """attention (additive), mean or max over the real tokens."""
    attention_dim: int = 128
    """Width of the additive attention's hidden layer (W_a)."""
    dropout: float = 0.1
    type_vocab_size: int = 2
    pad_token_id: int = 0
    initializer_range: float = 0.02
    id2label: dict[str, str] | None = None
    problem_type: str | None = None
    model_type: str = "bertpipe-recurrent"

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell {self.cell!r}: choose one of {', '.join(CELLS)}")
        if self.pooling not in POOLING:
            raise ValueError(f"pooling {self.pooling!r}: choose one of {', '.join(POOLING)}")

    @property
    def num_labels(self) -> int:
        return len(self.id2label) if self.id2label else 2

    @property
    def output_size(self) -> int:
        return self.hidden_size * (2 if self.bidirectional else 1)


class AdditiveAttentionPooling(nn.Module):
    """c = sum_t softmax_t(v^T tanh(W_a h_t + b_a)) h_t over the real tokens."""

    def __init__(self, width: int, attention_dim: int):
        super().__init__()
        self.proj = nn.Linear(width, attention_dim)  # W_a, b_a
        self.v = nn.Linear(attention_dim, 1, bias=False)

    def weights(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        e = self.v(torch.tanh(self.proj(h))).squeeze(-1)  # (B, T)
        return e.masked_fill(mask == 0, float("-inf")).softmax(-1)  # (B, T)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bt,bth->bh", self.weights(h, mask), h)  # (B, H)


def pool(how: str, h: torch.Tensor, mask: torch.Tensor, attention: nn.Module | None):
    """(B, T, H) states and (B, T) mask -> (B, H)."""
    if how == "attention":
        assert attention is not None
        return attention(h, mask)
    m = mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
    if how == "mean":
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)
    return h.masked_fill(m == 0, float("-inf")).amax(1)  # max


class RecurrentStack(nn.Module):
    """A (bi)directional recurrent network over vectors, packed so padding is never read."""

    def __init__(self, c: RecurrentConfig, input_size: int):
        super().__init__()
        kwargs = {"nonlinearity": "tanh"} if c.cell == "rnn" else {}
        self.rnn = CELLS[c.cell](
            input_size,
            c.hidden_size,
            num_layers=c.num_layers,
            bidirectional=c.bidirectional,
            batch_first=True,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
            **kwargs,
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        n = lengths(mask).clamp(min=1).cpu()
        packed = pack_padded_sequence(x, n, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
        return h  # (B, T, H * directions)


class SequenceEncoder(nn.Module):
    """Recurrent stack + pooling over given input vectors (also ELMo's task encoder)."""

    def __init__(self, c: RecurrentConfig, input_size: int):
        super().__init__()
        self.config = c
        self.stack = RecurrentStack(c, input_size)
        self.attention = (
            AdditiveAttentionPooling(c.output_size, c.attention_dim)
            if c.pooling == "attention"
            else None
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> EncoderOutputs:
        h = self.stack(x, mask)  # (B, T, H')
        return EncoderOutputs(h, pool(self.config.pooling, h, mask, self.attention))


class RecurrentModel(nn.Module):
    """Token + segment embeddings, then the recurrent encoder."""

    def __init__(self, c: RecurrentConfig):
        super().__init__()
        self.config = c
        self.word_embeddings = nn.Embedding(
            c.vocab_size, c.embedding_dim, padding_idx=c.pad_token_id
        )
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.embedding_dim)
        self.dropout = Dropout(c.dropout)
        self.encoder = SequenceEncoder(c, c.embedding_dim)

    def forward(self, input_ids, token_type_ids, attention_mask) -> EncoderOutputs:
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.encoder(self.dropout(x), attention_mask)  # (B, T, E) in


def init_weights(model: nn.Module, std: float) -> None:
    """The recurrent networks' initialisation, in one place (see the module docstring; ELMo's too)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LSTM):
            for name, p in m.named_parameters():
                if name.startswith("bias_ih"):
                    with torch.no_grad():
                        p[m.hidden_size : 2 * m.hidden_size].fill_(1.0)  # forget gate


class RecurrentForSequenceClassification(SequenceHead):
    def __init__(self, config: RecurrentConfig):
        super().__init__(config, RecurrentModel(config), config.output_size, config.dropout)
        init_weights(self, config.initializer_range)


class RecurrentForTokenClassification(TokenHead):
    def __init__(self, config: RecurrentConfig):
        super().__init__(config, RecurrentModel(config), config.output_size, config.dropout)
        init_weights(self, config.initializer_range)


class RecurrentForQuestionAnswering(SpanHead):
    def __init__(self, config: RecurrentConfig):
        super().__init__(config, RecurrentModel(config), config.output_size, config.dropout)
        init_weights(self, config.initializer_range)


def flops_per_token(c: RecurrentConfig, seq_len: int = 0, predicted_fraction: float = 0.0) -> float:
    """Training FLOPs per token (3 x forward): the cells' matmuls, 2 per multiply-add."""
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[c.cell]
    directions = 2 if c.bidirectional else 1
    forward, width = 0, c.embedding_dim
    for _ in range(c.num_layers):
        forward += directions * 2 * gates * c.hidden_size * (width + c.hidden_size)
        width = c.output_size
    return 3.0 * forward
