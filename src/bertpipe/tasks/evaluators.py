"""Dev-set scoring and prediction decoding, in percent, from torchmetrics / seqeval / the official SQuAD rules.

Owns the evaluators the fine-tuning module feeds batch by batch:
``update(batch, logits)``, ``compute() -> {name: percent}``, ``reset()``, and
``predictions()``: what the last pass predicted, decoded for the predictions file
(label names, scores, tags per word, answer texts), and ``references()``: the gold
labels decoded the same way (None for SQuAD). Each task kind
(``tasks/kinds.py``) builds its evaluator. Evaluators keep their state on the CPU
so they work whatever device trains.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torchmetrics
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryMatthewsCorrCoef,
    MulticlassAccuracy,
    MulticlassF1Score,
)
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

from bertpipe.labels import IGNORE_INDEX


class GlueMatthewsCorrCoef(BinaryMatthewsCorrCoef):
    """Matthews correlation with the GLUE / scikit-learn convention: 0 when the predictions
    or the targets are all one class. torchmetrics returns a small positive value there
    (0.11 for a constant "acceptable" on CoLA), which would credit a model that learned nothing."""

    def compute(self) -> torch.Tensor:
        tn, fp, fn, tp = self.confmat.reshape(-1)
        if min(tp + fp, tn + fn, tp + fn, tn + fp) == 0:
            return torch.tensor(0.0)
        return super().compute()


class SequenceEvaluator:
    """One prediction per example: classification (class ids) or regression (scores).

    ``predict`` turns a batch of logits into what the metrics take; ``decode`` turns
    those into what the predictions file holds.
    """

    def __init__(
        self,
        metrics: tuple[str, ...],
        num_labels: int,
        predict: Callable[[torch.Tensor], torch.Tensor],
        decode: Callable[[torch.Tensor], list],
    ):
        factories = {
            "acc": lambda: MulticlassAccuracy(num_classes=num_labels, average="micro"),
            "macro_f1": lambda: MulticlassF1Score(num_classes=num_labels, average="macro"),
            "f1": lambda: BinaryF1Score(),
            "mcc": lambda: GlueMatthewsCorrCoef(),
            "pearson": lambda: PearsonCorrCoef(),
            "spearman": lambda: SpearmanCorrCoef(),
        }
        self.predict, self.decode = predict, decode
        self.metrics = torchmetrics.MetricCollection({n: factories[n]() for n in metrics})
        self.reset()

    def update(self, batch: dict, logits: torch.Tensor) -> None:
        preds, gold = self.predict(logits).detach().cpu(), batch["labels"].cpu()
        self.metrics.update(preds, gold)
        self._predictions += self.decode(preds)
        self._references += self.decode(gold)

    def compute(self) -> dict[str, float]:
        # A correlation of constant predictions is undefined (NaN); it counts as 0, no signal.
        return {
            k: 0.0 if torch.isnan(v) else 100 * float(v) for k, v in self.metrics.compute().items()
        }

    def predictions(self) -> list:
        return list(self._predictions)

    def references(self) -> list:
        """The gold labels (scores) of the last pass, decoded as the predictions are."""
        return list(self._references)

    def reset(self) -> None:
        self.metrics.reset()
        self._predictions: list = []
        self._references: list = []


class TokenEvaluator:
    """Tag accuracy over first sub-word tokens (torchmetrics) and, for BIO tags, entity-level F1 (seqeval)."""

    def __init__(self, metrics: tuple[str, ...], labels: tuple[str, ...]):
        self.names, self.labels = metrics, labels
        self.accuracy = MulticlassAccuracy(
            num_classes=len(labels), average="micro", ignore_index=IGNORE_INDEX
        )
        self.reset()

    def update(self, batch: dict, logits: torch.Tensor) -> None:
        preds, gold = logits.argmax(-1).detach().cpu(), batch["labels"].cpu()
        self.accuracy.update(preds, gold)
        for p, g in zip(preds, gold, strict=True):
            keep = g != IGNORE_INDEX
            self.pred_tags.append([self.labels[i] for i in p[keep].tolist()])
            self.gold_tags.append([self.labels[i] for i in g[keep].tolist()])

    def compute(self) -> dict[str, float]:
        out = {"token_acc": 100 * float(self.accuracy.compute())}
        if "entity_f1" in self.names:
            from seqeval.metrics import f1_score, precision_score, recall_score

            out["entity_f1"] = 100 * f1_score(self.gold_tags, self.pred_tags, zero_division=0)
            out["entity_precision"] = 100 * precision_score(
                self.gold_tags, self.pred_tags, zero_division=0
            )
            out["entity_recall"] = 100 * recall_score(
                self.gold_tags, self.pred_tags, zero_division=0
            )
        return out

    def predictions(self) -> list[list[str]]:
        """Tags per word (the first sub-word's prediction), in dev order."""
        return list(self.pred_tags)

    def references(self) -> list[list[str]]:
        """The gold tags per word, in dev order."""
        return list(self.gold_tags)

    def reset(self) -> None:
        self.accuracy.reset()
        self.pred_tags: list[list[str]] = []
        self.gold_tags: list[list[str]] = []


class SquadEvaluator:
    """Collects start/end logits per window, decodes spans, scores with the official rules."""

    def __init__(
        self,
        features: list[dict],
        rows,
        context_offsets: list,
        *,
        n_best: int,
        max_answer_length: int,
        unanswerable: bool,
    ):
        self.features, self.rows, self.context_offsets = features, rows, context_offsets
        self.n_best, self.max_answer_length, self.unanswerable = (
            n_best,
            max_answer_length,
            unanswerable,
        )
        self.last_predictions: dict[str, str] = {}
        self.reset()

    def update(self, batch: dict, logits: torch.Tensor) -> None:
        spans = logits.detach().float().cpu().numpy()  # (B, T, 2)
        for f, row in zip(batch["feature"].tolist(), spans, strict=True):
            n = len(self.features[f]["input_ids"])
            self.logits[f] = row[:n]

    def compute(self) -> dict[str, float]:
        from bertpipe.tasks import squad

        order = sorted(self.logits)
        feats = [self.features[f] for f in order]
        preds, null_diff = squad.decode(
            feats,
            [self.logits[f][:, 0] for f in order],
            [self.logits[f][:, 1] for f in order],
            self.rows,
            self.context_offsets,
            n_best=self.n_best,
            max_answer_length=self.max_answer_length,
        )
        if not self.unanswerable:
            self.last_predictions = preds
            return squad.squad_scores(preds, self.rows)
        scores = squad.squad_v2_scores(preds, null_diff, self.rows)
        thresh = scores["best_f1_thresh"]
        self.last_predictions = {q: (p if null_diff[q] <= thresh else "") for q, p in preds.items()}
        return scores

    def references(self) -> None:
        """None: answers are scored by the official rules; the report draws no picture of them."""
        return None

    def predictions(self) -> dict[str, str]:
        """Answer text per question id (v2.0: empty where the best threshold says no answer)."""
        return dict(self.last_predictions)

    def reset(self) -> None:
        self.logits: dict[int, np.ndarray] = {}
