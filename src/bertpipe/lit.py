"""LightningModules: training logic around an injected model, metrics from torchmetrics.

Owns the training step (one shared ``_step`` for train and validation), the
metrics and their names (``train/mlm_loss``, ``val/mlm_acc``, ...), and the
optimiser/scheduler wiring. No file I/O and no MLflow here: callbacks and the
stage do that.
"""

from __future__ import annotations

import lightning as L
import torch
import torchmetrics
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy

from bertpipe.optim import lightning_optimizers


class _SharedStep(L.LightningModule):
    """Training and validation run the subclass's ``_step(batch, stage)``; what it logs differs.

    Also owns when AdamW runs fused and how fused steps are clipped (``_fused_adamw``)."""

    def training_step(self, batch: dict, batch_idx: int):
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int):
        self._step(batch, "val")

    def _fused_adamw(self) -> bool:
        """Fused AdamW where it is safe: on cpu/cuda, one process per device, no gradient scaler.

        Fused AdamW is 5x faster per step on CPU than foreach (MiniLM: 29 vs 144 ms, docs/LOG.md),
        but Lightning's mixed-precision plugin refuses to clip gradients for it (bf16 too), because
        with a scaler the gradients are only unscaled inside ``step``. Without a scaler they are
        final after backward, so ``configure_gradient_clipping`` clips them itself.
        """
        trainer = self.trainer
        return (self.device.type in ("cpu", "cuda")
                and type(trainer.strategy) in (SingleDeviceStrategy, DDPStrategy)
                and getattr(trainer.precision_plugin, "scaler", None) is None)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # A fused optimizer here was built by ``_fused_adamw``, so no scaler is in play.
        if not (gradient_clip_val and optimizer.defaults.get("fused")):
            return self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)


class PretrainingModule(_SharedStep):
    """MLM (+ NSP) pretraining of an injected ``BertForPreTraining``."""

    def __init__(self, model: torch.nn.Module, *, optimizer: str = "adamw", learning_rate: float = 1e-4,
                 weight_decay: float = 0.01, adam_betas=(0.9, 0.999), adam_epsilon: float = 1e-6,
                 warmup_steps: int = 0, max_steps: int = 1000, nsp_loss: bool = True):
        super().__init__()
        self.model = model
        self.save_hyperparameters(ignore=["model"])
        vocab = model.config.vocab_size
        self.val_mlm_acc = MulticlassAccuracy(num_classes=vocab, average="micro")
        self.val_nsp_acc = BinaryAccuracy()
        self.val_mlm_loss = torchmetrics.MeanMetric()
        self.val_nsp_loss = torchmetrics.MeanMetric()
        self.train_mlm_acc = MulticlassAccuracy(num_classes=vocab, average="micro")

    def forward(self, batch: dict):
        return self.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                          mlm_labels=batch["mlm_labels"],
                          nsp_labels=batch.get("nsp_labels") if self.hparams.nsp_loss else None)

    def _step(self, batch: dict, stage: str):
        out = self(batch)
        n = batch["input_ids"].shape[0]
        preds = out.mlm_logits.argmax(-1)
        if stage == "train":
            self.train_mlm_acc(preds, out.mlm_targets)
            self.log("train/loss", out.loss, prog_bar=True, batch_size=n)
            self.log("train/mlm_loss", out.mlm_loss, batch_size=n)
            self.log("train/mlm_acc", self.train_mlm_acc, batch_size=n)
            if out.nsp_loss is not None:
                self.log("train/nsp_loss", out.nsp_loss, batch_size=n)
        else:
            self.val_mlm_loss.update(out.mlm_loss, weight=out.mlm_targets.numel())
            self.val_mlm_acc.update(preds, out.mlm_targets)
            self.log("val/mlm_loss", self.val_mlm_loss, batch_size=n)
            self.log("val/mlm_acc", self.val_mlm_acc, prog_bar=True, batch_size=n)
            if out.nsp_loss is not None:
                self.val_nsp_loss.update(out.nsp_loss)
                self.val_nsp_acc.update(out.nsp_logits.argmax(-1), batch["nsp_labels"])
                self.log("val/nsp_loss", self.val_nsp_loss, batch_size=n)
                self.log("val/nsp_acc", self.val_nsp_acc, batch_size=n)
        return out.loss

    def on_validation_epoch_end(self) -> None:
        # Perplexity of the masked tokens: exp of the token-weighted mean cross-entropy.
        self.log("val/perplexity", torch.exp(self.val_mlm_loss.compute()))

    def configure_optimizers(self):
        h = self.hparams
        return lightning_optimizers(self.model, h.optimizer, h.learning_rate, h.weight_decay,
                                    h.adam_betas, h.adam_epsilon, h.warmup_steps, h.max_steps,
                                    fused=h.optimizer == "adamw" and self._fused_adamw())

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


class FinetuningModule(_SharedStep):
    """Fine-tuning of an injected task model (sequence classification/regression, token
    classification or span QA) with an injected dev-set evaluator (``tasks.metrics``)."""

    TARGETS = ("labels", "start_positions", "end_positions")

    def __init__(self, model: torch.nn.Module, evaluator, *, learning_rate: float = 2e-5,
                 weight_decay: float = 0.01, warmup_steps: int = 0, max_steps: int = 1000):
        super().__init__()
        self.model, self.evaluator = model, evaluator
        self.save_hyperparameters(ignore=["model", "evaluator"])

    def forward(self, batch: dict):
        targets = {k: batch[k] for k in self.TARGETS if k in batch}
        return self.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], **targets)

    def _step(self, batch: dict, stage: str):
        out = self(batch)
        n = batch["input_ids"].shape[0]
        if out.loss is not None:
            self.log(f"{stage}/loss", out.loss, prog_bar=stage == "train", batch_size=n)
        if stage == "val":
            self.evaluator.update(batch, out.logits)
        return out.loss

    def predict_step(self, batch: dict, batch_idx: int):
        return self.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]).logits

    def on_validation_epoch_start(self) -> None:
        self.evaluator.reset()

    def on_validation_epoch_end(self) -> None:
        scores = self.evaluator.compute()
        self.log_dict({f"val/{k}": float(v) for k, v in scores.items()}, prog_bar=True)

    def configure_optimizers(self):
        h = self.hparams
        return lightning_optimizers(self.model, "adamw", h.learning_rate, h.weight_decay,
                                    (0.9, 0.999), 1e-6, h.warmup_steps, h.max_steps,
                                    fused=self._fused_adamw())
