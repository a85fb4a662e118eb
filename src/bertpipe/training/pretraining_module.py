"""The pretraining LightningModule: MLM (+ NSP) around an injected network, metrics from torchmetrics.

Owns the objective's training and validation step (one shared ``_step``; the two
stages differ only in which metric collection they feed), the metric names
(``train/mlm_loss``, ``val/mlm_acc``, ``val/perplexity``, ...), the optimiser and
schedule wiring, and the RNG state that travels with checkpoints for an exact
resume. No file I/O and no MLflow here: callbacks and the recipe do that.
"""

from __future__ import annotations

import torch
import torchmetrics
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy

from bertpipe.training.optim import FusedAdamWClipping, lightning_optimizers
from bertpipe.training.step_axis import log_training_step, log_validation_step


def _metrics(prefix: str, vocab_size: int, nsp: bool) -> torchmetrics.MetricCollection:
    """Batch values in training (per step), token- or example-weighted means in validation."""
    metrics: dict[str, torchmetrics.Metric | torchmetrics.MetricCollection] = {
        "loss": torchmetrics.MeanMetric(),
        "mlm_loss": torchmetrics.MeanMetric(),
        "mlm_acc": MulticlassAccuracy(num_classes=vocab_size, average="micro"),
    }
    if nsp:
        metrics.update(nsp_loss=torchmetrics.MeanMetric(), nsp_acc=BinaryAccuracy())
    return torchmetrics.MetricCollection(metrics, prefix=prefix, compute_groups=False)


class PretrainingModule(FusedAdamWClipping):
    """MLM (+ NSP) pretraining of an injected network with the ``BertForPreTraining`` interface."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        optimizer: str = "adamw",
        learning_rate: float = 1e-4,
        weight_decay: float = 0.01,
        adam_betas=(0.9, 0.999),
        adam_epsilon: float = 1e-6,
        warmup_steps: int = 0,
        max_steps: int = 1000,
        nsp_loss: bool = True,
    ):
        super().__init__()
        self.model = model
        self.save_hyperparameters(ignore=["model"])
        vocab = int(model.config.vocab_size)  # type: ignore[union-attr, arg-type]  # nn.Module attrs
        self.train_metrics = _metrics("train/", vocab, nsp_loss)
        self.val_metrics = _metrics("val/", vocab, nsp_loss)

    def forward(self, batch: dict):
        return self.model(
            batch["input_ids"],
            batch["token_type_ids"],
            batch["attention_mask"],
            mlm_labels=batch["mlm_labels"],
            nsp_labels=batch.get("nsp_labels") if self.hparams["nsp_loss"] else None,
        )

    def training_step(self, batch: dict, batch_idx: int):
        log_training_step(self)
        return self._step(batch, self.train_metrics)

    def validation_step(self, batch: dict, batch_idx: int):
        log_validation_step(self)
        self._step(batch, self.val_metrics)

    def _step(self, batch: dict, metrics: torchmetrics.MetricCollection):
        out = self(batch)
        n = batch["input_ids"].shape[0]
        p = metrics.prefix
        metrics[f"{p}loss"](out.loss, n)
        metrics[f"{p}mlm_loss"](out.mlm_loss, out.mlm_targets.numel())  # per masked token
        metrics[f"{p}mlm_acc"](out.mlm_logits.argmax(-1), out.mlm_targets)
        if out.nsp_loss is not None:
            metrics[f"{p}nsp_loss"](out.nsp_loss, n)
            metrics[f"{p}nsp_acc"](out.nsp_logits.argmax(-1), batch["nsp_labels"])
        for name, metric in metrics.items():
            self.log(name, metric, prog_bar=name in (f"{p}loss", f"{p}mlm_acc"), batch_size=n)
        return out.loss

    def on_validation_epoch_end(self) -> None:
        # Perplexity of the masked tokens: exp of the token-weighted mean cross-entropy.
        self.log("val/perplexity", torch.exp(self.val_metrics["val/mlm_loss"].compute()))

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
