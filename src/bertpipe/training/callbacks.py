"""Lightning callbacks for pretraining: throughput and ETA, curves for DVC plots, fill-mask probes.

Owns what is measured or shown around training without being part of it, so the
LightningModule stays free of I/O. State that must survive a resume (the curve
history) is saved in the checkpoint through ``state_dict``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger

from bertpipe import tracking
from bertpipe.inference.fill_mask import fill_mask

log = logging.getLogger(__name__)


class CheckpointAfterValidation(ModelCheckpoint):
    """Step checkpoints that, at a step with a validation due, are saved after it.

    Lightning saves ``every_n_train_steps`` checkpoints at the end of the training batch,
    before the validation of that step runs. A process killed between the two resumed
    from that checkpoint and never ran the validation: its point was missing from
    ``val.csv`` and MLflow. Deferred to the end of the validation (Lightning's own
    deferral, which it uses for monitored metrics not yet computed), the checkpoint holds
    the validation's curve row, and a kill before it resumes from the previous one.

    Checkpoints are named ``step{step:07d}.ckpt`` and ranked by step (``monitor="step"``).
    On resume the top-k bookkeeping is rebuilt from the files on disk: a checkpoint's own
    saved bookkeeping does not count itself (it is written before it is recorded), so one
    resumed from after a kill between it and ``last.ckpt`` was never deleted (nor was the
    file resumed from, which Lightning protects).
    """

    NAME = re.compile(r"step(\d+)\.ckpt")

    def __init__(self, *, val_every_n_steps: int, **kwargs):
        super().__init__(**kwargs)
        self.val_every_n_steps = val_every_n_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        every = self._every_n_train_steps
        if (
            every >= 1
            and step % every == 0
            and self.val_every_n_steps >= 1
            and step % self.val_every_n_steps == 0
            and not self._should_skip_saving_checkpoint(trainer)
        ):
            self._defer_save_until_validation = True
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def _should_remove_checkpoint(self, trainer, previous: str, current: str) -> bool:
        # Lightning never deletes the file a run resumed from; in this folder, which only
        # the pretrain stage writes, that file is a step checkpoint like the others.
        return previous != current and os.path.dirname(previous) == self.dirpath

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        if not self.dirpath or self.save_top_k < 1:
            return
        found = {}
        for name in os.listdir(self.dirpath):
            if m := self.NAME.fullmatch(name):
                found[os.path.join(self.dirpath, name)] = torch.tensor(int(m.group(1)))
        keep = sorted(found, key=lambda p: int(found[p]), reverse=True)[: self.save_top_k]
        for path in set(found) - set(keep):
            log.info("pretrain: deleting %s (beyond pretrain.keep_last_k)", path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.best_k_models = {p: found[p] for p in keep}
        if keep:
            self.best_model_path, self.best_model_score = keep[0], found[keep[0]]
        if len(keep) == self.save_top_k:
            self.kth_best_model_path, self.kth_value = keep[-1], found[keep[-1]]


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


class WallClockBudget(L.Callback):
    """Stops training once its wall time (summed over resumes) reaches ``seconds``."""

    def __init__(self, seconds: float | None):
        self.seconds, self.used = seconds, 0.0
        self._start: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._start is not None:
            self.used += time.perf_counter() - self._start
        if self.seconds is not None and self.used >= self.seconds:
            trainer.should_stop = True

    def state_dict(self) -> dict:
        return {"used": self.used}

    def load_state_dict(self, state: dict) -> None:
        self.used = state.get("used", 0.0)


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
        for key in sorted(m):
            if key.startswith("train/") and key.endswith(("loss", "tokens_per_s")):
                row[key.split("/", 1)[1]] = round(float(m[key]), 6)
        self.train.append(row)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        row = {"step": trainer.global_step}
        for key in sorted(m):
            if key.startswith("val/") and key != "val/loss" and not key.endswith("nsp_loss"):
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
