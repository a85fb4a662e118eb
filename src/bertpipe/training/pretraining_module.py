"""The pretraining LightningModule: an injected network under an injected objective, metrics from torchmetrics.

Owns the training and validation step (one shared ``_step``; the two stages
differ only in which metric collection they feed), the metric names
(``train/<term>_loss``, ``val/<term>_acc``, ``val/perplexity``; the terms are the
objective's, ``training/objectives.py``), the optimiser and
schedule wiring, and the RNG state that travels with checkpoints for an exact
resume. No file I/O and no MLflow here: callbacks and the recipe do that.
"""

from __future__ import annotations

import torch
import torchmetrics
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy

from bertpipe.training.objectives import Objective
from bertpipe.training.optim import FusedAdamWClipping, lightning_optimizers
from bertpipe.training.pretraining_data import instances_in
from bertpipe.training.step_axis import log_training_step, log_validation_step


def _metrics(prefix: str, vocab_size: int, terms: tuple[str, ...]) -> torchmetrics.MetricCollection:
    """Batch values in training (per step), token- or example-weighted means in validation."""
    metrics: dict[str, torchmetrics.Metric | torchmetrics.MetricCollection] = {
        "loss": torchmetrics.MeanMetric()
    }
    for term in terms:
        metrics[f"{term}_loss"] = torchmetrics.MeanMetric()
        metrics[f"{term}_acc"] = (
            BinaryAccuracy()
            if term == "nsp"
            else MulticlassAccuracy(num_classes=vocab_size, average="micro")
        )
    return torchmetrics.MetricCollection(metrics, prefix=prefix, compute_groups=False)


class PretrainingModule(FusedAdamWClipping):
    """Pretraining of an injected network under an injected objective (``training/objectives.py``)."""

    def __init__(
        self,
        model: torch.nn.Module,
        objective: Objective,
        *,
        optimizer: str = "adamw",
        learning_rate: float = 1e-4,
        weight_decay: float = 0.01,
        adam_betas=(0.9, 0.999),
        adam_epsilon: float = 1e-6,
        warmup_steps: int = 0,
        max_steps: int = 1000,
    ):
        super().__init__()
        self.model, self.objective = model, objective
        self.save_hyperparameters(ignore=["model", "objective"], logger=False)  # the run logs them
        vocab = int(model.config.vocab_size)  # type: ignore[union-attr, arg-type]  # nn.Module attrs
        self.train_metrics = _metrics("train/", vocab, objective.terms())
        self.val_metrics = _metrics("val/", vocab, objective.terms())

    def forward(self, batch: dict):
        return self.objective.step(self.model, batch)

    def training_step(self, batch: dict, batch_idx: int):
        log_training_step(self)
        return self._step(batch, self.train_metrics)

    def validation_step(self, batch: dict, batch_idx: int):
        log_validation_step(self)
        self._step(batch, self.val_metrics)

    def _step(self, batch: dict, metrics: torchmetrics.MetricCollection):
        loss, terms = self(batch)
        n = instances_in(batch)
        p = metrics.prefix
        metrics[f"{p}loss"](loss, n)
        for name, term in terms.items():
            metrics[f"{p}{name}_loss"](term.loss, term.weight)
            metrics[f"{p}{name}_acc"](term.predictions, term.targets)
        first = self.objective.terms()[0]
        for name, metric in metrics.items():
            self.log(name, metric, prog_bar=name in (f"{p}loss", f"{p}{first}_acc"), batch_size=n)
        return loss

    def on_validation_epoch_end(self) -> None:
        # Perplexity: exp of the token-weighted mean cross-entropy (the mean over directions for ELMo).
        losses = [
            self.val_metrics[f"val/{t}_loss"].compute() for t in self.objective.perplexity_terms
        ]
        self.log("val/perplexity", torch.exp(torch.stack(losses).mean()))

    def configure_optimizers(self):
        h = self.hparams
        return lightning_optimizers(
            self.model,
            h.optimizer,
            h.learning_rate,
            h.weight_decay,
            h.adam_betas,
            h.adam_epsilon,
            h.warmup_steps,
            h.max_steps,
            fused=h.optimizer == "adamw" and self._fused_adamw(),
        )

    # Exact resume: dropout draws from these generators, so they travel with the checkpoint.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if states:
            torch.set_rng_state(states["torch"])
            if states["cuda"] is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(states["cuda"])
