"""Pretraining objectives: what each family's pretraining network is trained to predict.

Owns, per objective named in the family registry (``models/registry.py``): the
terms it reports (``mlm`` and ``nsp`` for BERT, ``mlm`` for the modern family, ``lm`` for GPT, ``fwd_lm`` and
``bwd_lm`` for ELMo; the metric names ``train/<term>_loss``, ``val/<term>_acc``
follow), whether its batches are masked (BERT's MLM) or plain token sequences,
one step (network + batch -> loss and, per term, its loss, weight, predictions
and targets), and the fraction of positions it projects onto the vocabulary (for
the FLOPs estimate). ``PretrainingModule`` is the same for every objective.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from bertpipe.data.packing import PACKED_KEYS


@dataclass
class Term:
    loss: torch.Tensor
    weight: int
    """What the loss is a mean over (masked tokens, sequences, predicted tokens)."""
    predictions: torch.Tensor
    targets: torch.Tensor


class Objective(ABC):
    masked: bool = False
    """Batches carry MLM corruption and ``mlm_labels`` (BERT); else plain token sequences."""
    perplexity_terms: tuple[str, ...] = ()
    """Terms whose (mean) cross-entropy ``val/perplexity`` exponentiates."""

    def __init__(self, with_nsp: bool = False):
        self.with_nsp = with_nsp

    @abstractmethod
    def terms(self) -> tuple[str, ...]:
        """The reported terms, in order (the first is shown in the progress bar)."""

    @abstractmethod
    def step(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, Term]]:
        """(the loss to train, per term its loss, weight, predictions and targets)."""

    def predicted_fraction(self, data_config: dict) -> float:
        """Share of positions projected onto the vocabulary."""
        return 1.0


class MaskedLM(Objective):
    """BERT: masked-LM (+ next-sentence prediction)."""

    masked = True
    perplexity_terms = ("mlm",)

    def terms(self) -> tuple[str, ...]:
        return ("mlm", "nsp") if self.with_nsp else ("mlm",)

    def step(self, model, batch):
        out = model(
            batch["input_ids"],
            batch["token_type_ids"],
            batch["attention_mask"],
            mlm_labels=batch["mlm_labels"],
            nsp_labels=batch.get("nsp_labels") if self.with_nsp else None,
            **{k: batch[k] for k in PACKED_KEYS if k in batch},
        )
        terms = {
            "mlm": Term(out.mlm_loss, out.mlm_targets.numel(), out.mlm_predictions, out.mlm_targets)
        }
        if out.nsp_loss is not None:
            n = out.nsp_logits.shape[0]
            terms["nsp"] = Term(out.nsp_loss, n, out.nsp_logits.argmax(-1), batch["nsp_labels"])
        return out.loss, terms

    def predicted_fraction(self, data_config: dict) -> float:
        m = data_config["masking"]
        return min(
            m["mlm_probability"], m["max_predictions_per_seq"] / data_config["max_seq_length"]
        )


class MaskedLMOnly(MaskedLM):
    """The modern family: masked-LM without next-sentence prediction, whatever ``nsp_loss`` says."""

    def __init__(self, with_nsp: bool = False):
        super().__init__(with_nsp=False)


class NextTokenLM(Objective):
    """GPT: predict token t+1 from tokens 1..t."""

    perplexity_terms = ("lm",)

    def terms(self) -> tuple[str, ...]:
        return ("lm",)

    def step(self, model, batch):
        out = model(batch["input_ids"], batch["attention_mask"])
        return out.loss, {"lm": Term(out.loss, out.targets.numel(), out.predictions, out.targets)}


class BidirectionalLM(Objective):
    """ELMo: a forward LM (next token) and a backward LM (previous token); the loss is their mean."""

    perplexity_terms = ("fwd_lm", "bwd_lm")

    def terms(self) -> tuple[str, ...]:
        return ("fwd_lm", "bwd_lm")

    def step(self, model, batch):
        out = model(batch["input_ids"], batch["attention_mask"])
        n = out.forward_targets.numel()
        return out.loss, {
            "fwd_lm": Term(out.forward_loss, n, out.forward_predictions, out.forward_targets),
            "bwd_lm": Term(out.backward_loss, n, out.backward_predictions, out.backward_targets),
        }


OBJECTIVES: dict[str, type[Objective]] = {
    "masked_lm": MaskedLM,
    "masked_lm_only": MaskedLMOnly,
    "next_token": NextTokenLM,
    "bidirectional_lm": BidirectionalLM,
}
