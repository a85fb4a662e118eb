"""Lightning callbacks for pretraining: throughput and ETA, curves for DVC plots, fill-mask probes.

Owns what is measured or shown around training without being part of it, so the
LightningModule stays free of I/O. State that must survive a resume (the curve
history) is saved in the checkpoint through ``state_dict``.
"""

from __future__ import annotations

import logging
import time

import lightning as L
from lightning.pytorch.loggers import MLFlowLogger

from bertpipe import tracking
from bertpipe.inference.fill_mask import fill_mask

log = logging.getLogger(__name__)


class TokensPerSecond(L.Callback):
    """Logs ``train/tokens_per_s`` (non-padding tokens) and ``train/eta_min`` to the progress bar."""

    def __init__(self, window: int = 20):
        self.window = window
        self._times: list[float] = []
        self._tokens: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._times.append(time.perf_counter() - self._start)
        self._tokens.append(int(batch["attention_mask"].sum()) * trainer.world_size)
        self._times, self._tokens = self._times[-self.window :], self._tokens[-self.window :]
        rate = sum(self._tokens) / max(sum(self._times), 1e-9)
        sec_per_step = sum(self._times) / len(self._times) * trainer.accumulate_grad_batches
        eta = (trainer.max_steps - trainer.global_step) * sec_per_step / 60
        pl_module.log("train/tokens_per_s", rate, prog_bar=True, batch_size=1, rank_zero_only=True)
        pl_module.log("train/eta_min", eta, prog_bar=True, batch_size=1, rank_zero_only=True)


class CurveRecorder(L.Callback):
    """Keeps (step, metric) history for the DVC plots; saved in and restored from checkpoints."""

    def __init__(self, every_n_steps: int):
        self.every = every_n_steps
        self.train: list[dict] = []
        self.val: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every or (self.train and self.train[-1]["step"] == step):
            return
        m = trainer.callback_metrics
        row = {"step": step}
        for key in ("train/loss", "train/mlm_loss", "train/nsp_loss", "train/tokens_per_s"):
            if key in m:
                row[key.split("/", 1)[1]] = round(float(m[key]), 6)
        self.train.append(row)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        row = {"step": trainer.global_step}
        for key in ("val/mlm_loss", "val/mlm_acc", "val/nsp_acc", "val/perplexity"):
            if key in m:
                row[key.split("/", 1)[1]] = round(float(m[key]), 6)
        self.val = [r for r in self.val if r["step"] != row["step"]] + [row]

    def state_dict(self) -> dict:
        return {"train": self.train, "val": self.val}

    def load_state_dict(self, state: dict) -> None:
        self.train, self.val = state.get("train", []), state.get("val", [])


class FillMaskExamples(L.Callback):
    """At each validation, predict the [MASK]s of a few sentences and log them to MLflow."""

    def __init__(self, tokenizer, sentences: list[str]):
        self.tokenizer, self.sentences = tokenizer, list(sentences)
        self.latest: dict[str, list] = {}

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not self.sentences:
            return
        lines = []
        for s in self.sentences:
            preds = fill_mask(pl_module.model, self.tokenizer, s)
            self.latest[s] = preds
            shown = "; ".join(", ".join(f"{t} ({p:.2f})" for t, p in slot) for slot in preds)
            lines.append(f"{s}\n    -> {shown}")
        text = f"step {trainer.global_step}\n" + "\n".join(lines) + "\n"
        log.info("fill-mask at step %d:\n%s", trainer.global_step, "\n".join(lines))
        if isinstance(trainer.logger, MLFlowLogger):
            tracking.log_text(trainer.logger, text, f"fill_mask/step_{trainer.global_step:07d}.txt")
