"""Fine-tuning one GLUE task from one starting point with one seed.

Owns the training recipe around ``SequenceClassificationModule``: the starting
point (a pretrained Hugging Face BERT directory, ``package:NAME``, or ``scratch``
for the from-scratch baseline; all one code path), warm-up as a fraction of the
steps, keeping the best epoch by the task's dev metric, and dev predictions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from bertpipe.data import GlueDataModule
from bertpipe.lit import SequenceClassificationModule
from bertpipe.model import BertConfig, BertForSequenceClassification
from bertpipe.tasks.glue import get_task
from bertpipe.tasks.metrics import selection_metric
from bertpipe.tokenizer import resolve_dir


def build_classifier(init: str, task: str, scratch_config: BertConfig | None) -> BertForSequenceClassification:
    labels = get_task(task).labels
    id2label = {str(i): n for i, n in enumerate(labels)} if labels else {"0": "score"}
    problem = "regression" if labels is None else "single_label_classification"
    if init == "scratch":
        if scratch_config is None:
            raise ValueError("init 'scratch' needs a model config (the model section of params.yaml)")
        cfg = BertConfig(**{**scratch_config.__dict__, "id2label": id2label, "problem_type": problem})
        return BertForSequenceClassification(cfg)
    return BertForSequenceClassification.from_pretrained(resolve_dir(init), id2label=id2label,
                                                         problem_type=problem)


def finetune_glue(task: str, init: str, tokenizer_dir: str | Path, *, seed: int, learning_rate: float,
                  batch_size: int, epochs: int, max_length: int, warmup_fraction: float,
                  work_dir: str | Path, max_train_examples: int | None = None,
                  scratch_config: BertConfig | None = None, precision: str = "bf16-mixed") -> dict:
    """Train, keep the best dev epoch, return its dev metrics and predictions."""
    L.seed_everything(seed, workers=True, verbose=False)
    dm = GlueDataModule(task, tokenizer_dir, max_length, batch_size, seed, max_train_examples)
    dm.setup()
    steps = math.ceil(len(dm.train_rows) / batch_size) * epochs
    model = build_classifier(init, task, scratch_config)
    module = SequenceClassificationModule(model, task=task, learning_rate=learning_rate,
                                          warmup_steps=int(warmup_fraction * steps), max_steps=steps)
    key = f"val/{selection_metric(task)}"
    best = ModelCheckpoint(dirpath=Path(work_dir) / "ckpt", monitor=key, mode="max", save_top_k=1,
                           filename="best")
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu" if not torch.cuda.is_available() else "auto",
                        devices=1, precision=precision, logger=False, callbacks=[best],
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    best_module = SequenceClassificationModule.load_from_checkpoint(best.best_model_path, model=model,
                                                                    weights_only=False)
    metrics = {k: float(v) for k, v in trainer.validate(best_module, datamodule=dm, verbose=False)[0].items()}
    preds = torch.cat(trainer.predict(best_module, datamodule=dm)).tolist()
    (Path(work_dir) / "dev_predictions.json").write_text(json.dumps(preds))
    return {"task": task, "seed": seed, "init": init, "train_examples": len(dm.train_rows),
            "steps": steps, "best_checkpoint": best.best_model_path, **metrics}
