"""The fine-tuning LightningModule: an injected task network, an injected dev-set evaluator.

Owns the fine-tuning step (one shared ``_step``: forward with the batch's targets,
log the loss), feeding the evaluator during validation, and the optimiser wiring
(AdamW, linear warm-up and decay, as in the paper). What the targets and the
evaluator are is the task kind's (``tasks/kinds.py``).
"""

from __future__ import annotations

import torch

from bertpipe.data.packing import PACKED_KEYS
from bertpipe.training.optim import FusedAdamWClipping, lightning_optimizers
from bertpipe.training.step_axis import log_training_step, log_validation_step


class FinetuningModule(FusedAdamWClipping):
    """Fine-tuning of an injected task network with an injected evaluator (``tasks.evaluators``)."""

    TARGETS = ("labels", "start_positions", "end_positions")
    ADAM_EPSILON = 1e-6
    """AdamW's eps, as in BERT's fine-tuning code (transformers' Trainer uses 1e-8)."""

    def __init__(
        self,
        model: torch.nn.Module,
        evaluator,
        *,
        learning_rate: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_steps: int = 0,
        max_steps: int = 1000,
    ):
        super().__init__()
        self.model, self.evaluator = model, evaluator
        self.save_hyperparameters(ignore=["model", "evaluator"], logger=False)  # the run logs them

    def forward(self, batch: dict):
        targets = {k: batch[k] for k in (*self.TARGETS, *PACKED_KEYS) if k in batch}
        return self.model(
            batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], **targets
        )

    def _step(self, batch: dict, stage: str):
        out = self(batch)
        if out.loss is not None:
            n = len(batch["labels"]) if "labels" in batch else batch["input_ids"].shape[0]
            self.log(f"{stage}/loss", out.loss, prog_bar=True, batch_size=n)
        return out

    def training_step(self, batch: dict, batch_idx: int):
        log_training_step(self)
        return self._step(batch, "train").loss

    def validation_step(self, batch: dict, batch_idx: int):
        log_validation_step(self)
        self.evaluator.update(batch, self._step(batch, "val").logits)

    def on_validation_epoch_start(self) -> None:
        self.evaluator.reset()

    def on_validation_epoch_end(self) -> None:
        scores = self.evaluator.compute()
        self.log_dict({f"val/{k}": float(v) for k, v in scores.items()}, prog_bar=True)

    def configure_optimizers(self):
        h = self.hparams
        return lightning_optimizers(
            self.model,
            "adamw",
            h.learning_rate,
            h.weight_decay,
            (0.9, 0.999),
            self.ADAM_EPSILON,
            h.warmup_steps,
            h.max_steps,
            fused=self._fused_adamw(),
        )
