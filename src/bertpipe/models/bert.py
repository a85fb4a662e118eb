"""BERT (Devlin et al., 2018) in plain torch: one block per class, Hugging Face parameter names.

Owns the network, its sizes and its weight initialisation (``BertPreTrainedModel.init_weights``,
the one place). Torch-only; the Hugging Face checkpoint format (load any BERT
directory, save one that ``transformers`` loads) lives beside it in
``models/bert_checkpoint.py``, the family's entry in ``models/registry.py``.

Deviations from the original BERT, all deliberate:

* attention is ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels
  on GPU); the math is the paper's softmax(QK^T / sqrt(d)) V with a padding mask, left
  out on CPU when a batch has no padding. Q, K and V come from one (H -> 3H) matmul over
  the three concatenated projections (their parameters stay separate, as in the paper);
* the MLM loss is ``models/vocab_loss.vocab_cross_entropy_and_argmax``: fp32 cross-entropy
  in row chunks (the same loss and gradient as ``F.cross_entropy``), which also adds the
  output bias to the decoder's bf16 scores chunk by chunk, in fp32 as transformers' eager
  BERT adds it under autocast: the fp32 N x V logits and their gradient never exist whole,
  and the predictions for the accuracy come from the same pass. Without labels the head
  returns the fp32 logits themselves;
* the MLM head projects only the positions that carry a label (``mlm_labels !=
  -100``) onto the vocabulary: the full-vocabulary projection at every position
  is most of the cost of a small model and its result is thrown away;
* on CPU, dropout multiplies by a keep-mask drawn from int16 random numbers, and training-time
  attention with dropout runs the softmax/dropout/matmul explicitly (``models/dropout.py``,
  every family's); GPUs use ``F.dropout`` and fused SDPA kernels;
* optionally (``position_init="sinusoidal"``, the demo preset), the learned position
  embeddings *start* as Vaswani et al.'s sin/cos table scaled to ``position_init_std``
  instead of N(0, 0.02); they are trained as usual and the checkpoint format is
  unchanged. From N(0, 0.02), BERT-mini on the demo's 5 M tokens never learnt to use
  the word next to the mask and predicted from the bag of words ("the [MASK] store"
  -> ","); in the sin/cos table the similarity of two positions depends only on
  their offset, so "the next token" is one linear map from the start (docs/LOG.md,
  2026-11-22);
* GELU is the exact erf form (as in Hugging Face), not the tanh approximation of
  the original TensorFlow code;
* padding-free pretraining: a batch may pack several instances per row (``data/packing.py``);
  then position ids restart per instance, attention is block-diagonal (never across
  instances) and NSP reads each instance's own [CLS]. Same losses as the padded batch;
* the encoder returns the last layer and, with ``output_attentions=True``, each layer's
  attention probabilities (then computed explicitly; off, the SDPA path is unchanged); no
  per-layer hidden states, no cross-attention or KV cache (encoder only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertpipe.labels import IGNORE_INDEX
from bertpipe.models.dropout import Dropout, attention, attention_probs, dropout
from bertpipe.models.masks import block_mask, padding_mask
from bertpipe.models.vocab_loss import vocab_cross_entropy_and_argmax

# name -> (layers, hidden); heads = hidden / 64, FFN = 4 * hidden (Turc et al., 2019 sizes).
SIZES = {
    "tiny": (2, 128),
    "mini": (4, 256),
    "small": (4, 512),
    "medium": (8, 512),
    "base": (12, 768),
    "large": (24, 1024),
}


@dataclass
class BertConfig:
    """Hyperparameters, with the field names of Hugging Face's ``config.json``."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    id2label: dict[str, str] | None = None
    """Label names of a fine-tuned head (Hugging Face's field); None for pretraining."""
    problem_type: str | None = None
    """``regression`` or ``single_label_classification`` for sequence heads."""
    position_init: str = "normal"
    """How position embeddings start: ``normal`` (the paper) or ``sinusoidal`` (see the module
    docstring). An initialisation recipe, not architecture: not written to config.json."""
    position_init_std: float = 0.1
    """Standard deviation the sin/cos table is scaled to (``sinusoidal`` only)."""

    @property
    def num_labels(self) -> int:
        return len(self.id2label) if self.id2label else 2

    @classmethod
    def from_size(cls, size: str, vocab_size: int, **overrides) -> BertConfig:
        if size not in SIZES:
            raise ValueError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
        layers, hidden = SIZES[size]
        return cls(
            vocab_size=vocab_size,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=hidden // 64,
            intermediate_size=4 * hidden,
            **overrides,
        )


# ------------------------------------------------------------------------------ blocks


def sinusoid_table(positions: int, dim: int, std: float) -> torch.Tensor:
    """Vaswani et al.'s table (sin on even, cos on odd features) scaled to standard deviation std."""
    pos = torch.arange(positions, dtype=torch.float64)[:, None]  # (P, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return (table * (std / table.std())).float()  # (P, H)


class BertEmbeddings(nn.Module):
    """Token + segment + position embeddings, summed, then LayerNorm and dropout."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = Dropout(c.hidden_dropout_prob)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        T = input_ids.shape[1]
        positions = (
            torch.arange(T, device=input_ids.device) if position_ids is None else position_ids
        )
        x = (
            self.word_embeddings(input_ids)
            + self.token_type_embeddings(token_type_ids)
            + self.position_embeddings(positions)
        )  # (B, T, H)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention with a key padding mask."""

    def __init__(self, c: BertConfig):
        super().__init__()
        if c.hidden_size % c.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        self.n_head = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout_p = c.attention_probs_dropout_prob

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, attentions: list | None = None
    ) -> torch.Tensor:
        """``attentions``, when given, receives this layer's probabilities (B, nh, T, T), computed
        explicitly (before dropout); without it the fused SDPA path runs, untouched."""
        B, T, H = x.shape
        hs = H // self.n_head

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)

        # one (H -> 3H) matmul for the three projections: x is read (and cast) once
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])  # (3H, H)
        bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])  # (3H,)
        q, k, v = (heads(t) for t in F.linear(x, weight, bias).split(H, -1))
        p = self.dropout_p if self.training else 0.0
        if attentions is not None:
            probs = attention_probs(q, k, mask)  # (B, nh, T, T)
            attentions.append(probs)
            y = dropout(probs, p, self.training) @ v  # (B, nh, T, hs)
        else:
            y = attention(q, k, v, mask, p)  # (B, nh, T, hs)
        return y.transpose(1, 2).reshape(B, T, H)  # (B, T, H)


class BertOutput(nn.Module):
    """Projection back to H, dropout, Add & Norm (after attention, and after the feed-forward)."""

    def __init__(self, c: BertConfig, d_in: int):
        super().__init__()
        self.dense = nn.Linear(d_in, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = Dropout(c.hidden_dropout_prob)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertOutput(c, c.hidden_size)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, attentions: list | None = None
    ) -> torch.Tensor:
        return self.output(self.self(x, mask, attentions), x)


class BertIntermediate(nn.Module):
    """First feed-forward layer with GELU."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # (B, T, 4H)


class BertLayer(nn.Module):
    """One encoder layer: self-attention block then feed-forward block."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertOutput(c, c.intermediate_size)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, attentions: list | None = None
    ) -> torch.Tensor:
        a = self.attention(x, mask, attentions)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(c) for _ in range(c.num_hidden_layers))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, attentions: list | None = None
    ) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask, attentions)
        return x


class BertPooler(nn.Module):
    """tanh(dense(h_[CLS])): the sentence representation the NSP and classifier heads use."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, h: torch.Tensor, cls_index: torch.Tensor | None = None) -> torch.Tensor:
        """``cls_index``: packed rows' flat index of each instance's [CLS]; else position 0."""
        first = h[:, 0] if cls_index is None else h.flatten(0, 1)[cls_index]
        return torch.tanh(self.dense(first))  # (B, H): one row per instance


@dataclass
class BertOutputs:
    last_hidden_state: torch.Tensor
    """(B, T, H)"""
    pooler_output: torch.Tensor | None
    """(B, H)"""
    attentions: tuple[torch.Tensor, ...] | None = None
    """With ``output_attentions``: per layer the attention probabilities, (B, nh, T, T)."""


class BertPreTrainedModel(nn.Module):
    """What every BERT network shares: its config and BERT's initialisation."""

    config: BertConfig
    loading_info: dict[str, list[str]]
    """Set by ``bert_checkpoint.load``: the weights a checkpoint lacked and those it had extra."""

    def init_weights(self) -> None:
        """BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorms."""
        if self.config.position_init not in ("normal", "sinusoidal"):
            raise ValueError(
                f"position_init {self.config.position_init!r}: choose 'normal' or 'sinusoidal'"
            )
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, 0.0, std)
                if m.padding_idx is not None:
                    with torch.no_grad():
                        m.weight[m.padding_idx].zero_()
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, BertLMPredictionHead):
                nn.init.zeros_(m.bias)
        if self.config.position_init == "sinusoidal":
            for m in self.modules():
                if isinstance(m, BertEmbeddings):
                    table = m.position_embeddings.weight
                    with torch.no_grad():
                        table.copy_(
                            sinusoid_table(
                                table.shape[0], table.shape[1], self.config.position_init_std
                            )
                        )

    def tie_weights(self) -> None:
        """Share the parameters the architecture ties (none here; the MLM decoder below)."""


# -------------------------------------------------------------------------------- models


class BertModel(BertPreTrainedModel):
    """The encoder: embeddings, N layers, pooler."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        position_ids: torch.Tensor | None = None,
        instance_ids: torch.Tensor | None = None,
        cls_index: torch.Tensor | None = None,
    ) -> BertOutputs:
        """Padded batches: ``attention_mask`` (B, T). Packed rows (``data/packing.py``): also
        ``position_ids``, ``instance_ids`` (R, T) for the block-diagonal mask, and ``cls_index``."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        mask = None
        if instance_ids is not None:
            mask = block_mask(instance_ids)  # (R, 1, T, T): True = attend
        elif attention_mask is not None and not (
            input_ids.device.type == "cpu" and bool(attention_mask.all())
        ):  # no padding: no mask (checked on CPU only, where it costs no device sync)
            mask = padding_mask(attention_mask)  # (B, 1, 1, T): True = attend
        attentions: list | None = [] if output_attentions else None
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        h = self.encoder(x, mask, attentions)
        pooled = self.pooler(h, cls_index) if self.pooler is not None else None
        return BertOutputs(h, pooled, tuple(attentions) if attentions is not None else None)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(h)))


class BertLMPredictionHead(nn.Module):
    """Transform, then the decoder tied to the word embeddings, plus an output bias."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(c)
        self.decoder = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """The logits less the bias: bf16 under bf16 autocast."""
        return self.decoder(self.transform(h))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # The bias is added outside the decoder's matmul: under bf16 autocast the scores
        # come out in bf16 and the bias, in fp32, makes the logits fp32. Folded into the
        # matmul (one addmm) it was rounded to bf16 with them, and held-out MLM accuracy
        # fell in five paired seeds of five (docs/LOG.md, 2026-12-03). With labels the
        # loss adds it chunk by chunk in the same fp32 (BertForPreTraining.forward).
        return self.scores(h) + self.bias  # (N, V)


class BertPreTrainingHeads(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(c)
        self.seq_relationship = nn.Linear(c.hidden_size, 2)


@dataclass
class PreTrainingOutputs:
    loss: torch.Tensor | None
    mlm_loss: torch.Tensor | None
    nsp_loss: torch.Tensor | None
    mlm_logits: torch.Tensor | None
    """(B, T, V) without labels; None with them (the loss builds them a chunk at a time)."""
    mlm_targets: torch.Tensor | None
    """(N,): the labels of the labelled positions, in row-major (batch, position) order."""
    nsp_logits: torch.Tensor
    """(B, 2); class 1 = B is a random segment."""
    mlm_predictions: torch.Tensor | None = None
    """(N,): the logits' argmax at those positions (with labels)."""


class BertForPreTraining(BertPreTrainedModel):
    """BERT with the masked-LM and next-sentence heads."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.cls = BertPreTrainingHeads(config)
        self.init_weights()
        self.tie_weights()

    def tie_weights(self) -> None:
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

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
        """Padded or packed batches (``BertModel.forward``); NSP reads each instance's [CLS]."""
        out = self.bert(
            input_ids,
            token_type_ids,
            attention_mask,
            position_ids=position_ids,
            instance_ids=instance_ids,
            cls_index=cls_index,
        )
        h = out.last_hidden_state
        head = self.cls.predictions
        mlm_logits = mlm_loss = nsp_loss = loss = targets = predictions = None
        if mlm_labels is not None:
            selected = mlm_labels != IGNORE_INDEX  # (B, T)
            targets = mlm_labels[selected]  # (N,)
            scores = head.scores(h[selected])  # (N, V): masked positions only
            mlm_loss, predictions = vocab_cross_entropy_and_argmax(scores, targets, head.bias)
            loss = mlm_loss
        else:
            mlm_logits = head(h)  # (B, T, V)
        nsp_logits = self.cls.seq_relationship(out.pooler_output)  # (B, 2)
        if nsp_labels is not None:
            nsp_loss = F.cross_entropy(nsp_logits.float(), nsp_labels)
            loss = nsp_loss if loss is None else loss + nsp_loss
        return PreTrainingOutputs(
            loss, mlm_loss, nsp_loss, mlm_logits, targets, nsp_logits, predictions
        )


# ------------------------------------------------------------------- fine-tuning heads


@dataclass
class TaskOutputs:
    loss: torch.Tensor | None
    logits: torch.Tensor
    """(B, num_labels), (B, T, num_labels), or (B, T, 2) for spans (start, end)."""


class BertForSequenceClassification(BertPreTrainedModel):
    """Classification or regression (``num_labels == 1``) on the pooled [CLS] representation."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights()

    def forward(
        self,
        input_ids,
        token_type_ids=None,
        attention_mask=None,
        labels=None,
        position_ids=None,
        instance_ids=None,
        cls_index=None,
    ) -> TaskOutputs:
        """Padded batches, or packed rows (one example per instance, pooled at its [CLS])."""
        pooled = self.bert(
            input_ids,
            token_type_ids,
            attention_mask,
            position_ids=position_ids,
            instance_ids=instance_ids,
            cls_index=cls_index,
        ).pooler_output
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        loss = None
        if labels is not None:
            if self.config.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1).float(), labels.float())
            else:
                loss = F.cross_entropy(logits.float(), labels)
        return TaskOutputs(loss, logits)


class BertForTokenClassification(BertPreTrainedModel):
    """A label per token (NER, POS) from the last hidden states."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights()

    def forward(
        self, input_ids, token_type_ids=None, attention_mask=None, labels=None
    ) -> TaskOutputs:
        h = self.bert(input_ids, token_type_ids, attention_mask).last_hidden_state
        logits = self.classifier(self.dropout(h))  # (B, T, num_labels)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX
            )
        return TaskOutputs(loss, logits)


class BertForQuestionAnswering(BertPreTrainedModel):
    """Span extraction: a start and an end logit per token."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.init_weights()

    def forward(
        self,
        input_ids,
        token_type_ids=None,
        attention_mask=None,
        start_positions=None,
        end_positions=None,
    ) -> TaskOutputs:
        h = self.bert(input_ids, token_type_ids, attention_mask).last_hidden_state
        logits = self.qa_outputs(h)  # (B, T, 2)
        loss = None
        if start_positions is not None and end_positions is not None:
            start, end = logits.float().unbind(-1)
            loss = (
                F.cross_entropy(start, start_positions) + F.cross_entropy(end, end_positions)
            ) / 2
        return TaskOutputs(loss, logits)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_token(c: BertConfig, seq_len: int, masked_fraction: float) -> float:
    """Training FLOPs per token: 6 x params-in-matmuls + attention + the MLM head on masked tokens."""
    L, H, V = c.num_hidden_layers, c.hidden_size, c.vocab_size
    dense = 6 * 12 * L * H * H + 12 * L * H * seq_len
    head = 6 * masked_fraction * (H * H + H * V)
    return dense + head
