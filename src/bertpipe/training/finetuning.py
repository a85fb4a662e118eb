"""Fine-tuning: one task from every configured starting point with every seed.

Owns the recipe around ``training.finetuning_module.FinetuningModule``:
- starting points, one code path (``training/starting_points.py``);
- one run = seed, train, keep the epoch with the best dev metric, score the dev
  set (and extra dev splits) with that epoch's weights, write its predictions;
- ``run_task``: inits x seeds, each finished run cached under ``work_dir`` with a
  fingerprint (a rerun after a failure redoes only what is missing), median and
  spread per metric, the best model exported in Hugging Face format;
- a task whose training data is unavailable is skipped with the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from bertpipe import tracking
from bertpipe.atomic import atomic_dir, write_json
from bertpipe.code_deps import code_identity
from bertpipe.config import FinetuneConfig, FinetuneHParams, ModelConfig, TrackingConfig
from bertpipe.data.catalog import DatasetUnavailable
from bertpipe.data.packing import fine_tuning_capacity
from bertpipe.data.tokenizer import copy_tokenizer_files
from bertpipe.errors import InputError
from bertpipe.models.registry import checkpoint_family, get_family
from bertpipe.tasks.card import write_card
from bertpipe.tasks.spec import TaskSpec, resolve_task
from bertpipe.training.console import quiet_known_noise
from bertpipe.training.finetuning_data import TaskDataModule
from bertpipe.training.finetuning_module import FinetuningModule
from bertpipe.training.fingerprints import directory_identity
from bertpipe.training.precision import resolve_precision
from bertpipe.training.starting_points import (
    build_task_model,
    checkpoint_dir,
    init_label,
    scratch_family,
    starting_point,
)
from bertpipe.training.step_axis import scores

log = logging.getLogger("bertpipe.finetuning")


class EpochLog(L.Callback):
    """Each epoch's dev scores and mean training loss, logged as they come (``bertpipe finetune``
    shows progress) and kept for the result (which epoch was kept, and the others)."""

    def __init__(self, name: str, key: str, epochs: int):
        self.name, self.key, self.total = name, key, epochs
        self.epochs: list[dict] = []
        self._losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._losses.append(float(loss))

    def on_validation_end(self, trainer, pl_module) -> None:  # after the module logged val/*
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        dev = {
            k.removeprefix("val/"): round(float(v), 4)
            for k, v in trainer.callback_metrics.items()
            if k.startswith("val/")
        }
        train_loss = sum(self._losses) / len(self._losses) if self._losses else float("nan")
        self._losses = []
        self.epochs.append({"epoch": len(self.epochs) + 1, "train_loss": train_loss, "dev": dev})
        log.info(
            "%s: epoch %d/%d train loss %.4f, dev %s",
            self.name,
            len(self.epochs),
            self.total,
            train_loss,
            ", ".join(f"{k} {v:.2f}" for k, v in dev.items()),
        )

    def best(self) -> dict:
        """The epoch ModelCheckpoint kept: the first with the highest selection metric."""
        metric = self.key.removeprefix("val/")
        return max(self.epochs, key=lambda e: (e["dev"].get(metric, float("-inf")), -e["epoch"]))


def constant_baseline(spec: TaskSpec, dm: TaskDataModule, hp: FinetuneHParams) -> dict | None:
    """The dev metrics of the kind's trivial predictor learned from the training rows (the
    majority class, the mean score, the most frequent tag), by the task's own evaluator: what
    "F1 80.4" is worth when always answering the same. None for QA."""
    predict = spec.kind.constant_logits(spec, dm.train)
    if predict is None:
        return None
    evaluator = spec.kind.evaluator(spec, dm.dev, hp)
    for batch in dm.val_dataloader():
        evaluator.update(batch, predict(batch))
    return evaluator.compute()


def task_inputs(spec: TaskSpec, dm: TaskDataModule) -> list[dict]:
    """A fine-tuning run's lineage: the examples it trained and was scored on, by the
    ``datasets`` content fingerprint of exactly those rows, with their counts."""
    contexts = {"train": "training", "dev": "validation"}
    return [
        {
            "name": f"{spec.name}/{split}",
            "source": spec.origin or spec.name,
            "digest": dm.fingerprints[split],
            "rows": used,
            "context": contexts.get(split, split),
        }
        for split, (used, _) in dm.sizes.items()
    ]


_SUBSET_WARNED: set[tuple] = set()
"""(task, split, used, total) already warned about in this process."""


def finetune_once(
    spec: TaskSpec,
    init: str,
    hp: FinetuneHParams,
    seed: int,
    work_dir: str | Path,
    *,
    pretrained_dir: str | Path | None = None,
    tokenizer_dir: str | Path = "models/tokenizer",
    model_cfg: ModelConfig | None = None,
    finetune_cfg: FinetuneConfig | None = None,
    precision: str = "auto",
    accelerator: str = "auto",
    logger=None,
    save_model_to: str | Path | None = None,
) -> dict:
    """Train one (task, init, seed); return the best epoch's dev metrics and predictions.

    ``model_cfg`` (the ``model`` section) holds the architectures of the ``scratch:FAMILY``
    inits; ``finetune_cfg`` the families' fine-tuning settings (``finetune.gpt``, ``finetune.elmo``).
    """
    work_dir = Path(work_dir)
    quiet_known_noise()
    L.seed_everything(seed, workers=True, verbose=False)
    checkpoint, tok, tok_dir = starting_point(init, pretrained_dir, tokenizer_dir)
    dm = TaskDataModule(spec, tok, hp, seed)
    dm.setup()
    for split, key in (("train", "max_train_examples"), ("dev", "max_eval_examples")):
        used, total = dm.sizes[split]
        if used < total and (spec.name, split, used, total) not in _SUBSET_WARNED:
            _SUBSET_WARNED.add((spec.name, split, used, total))  # once per task, not per run
            how = "a fixed random subset (seed 0)" if split == "train" else "the first rows"
            log.warning(
                "%s: %s on %d of the %d %s examples, %s (finetune.hparams.%s, or --%s; null = all)",
                spec.name,
                "training" if split == "train" else "scoring",
                used,
                total,
                split,
                how,
                key,
                key.replace("_", "-"),
            )
    model, family = build_task_model(spec, init, checkpoint, model_cfg, tok, finetune_cfg)
    if model.config.vocab_size < tok.get_vocab_size():
        raise InputError(
            f"{checkpoint}: model vocabulary {model.config.vocab_size} < tokenizer's "
            f"{tok.get_vocab_size()}; the tokenizer does not belong to this checkpoint"
        )
    dm.pack_into = fine_tuning_capacity(hp, model)
    steps = math.ceil(len(dm.train.rows) / hp.batch_size) * hp.epochs
    learning_rate = family.learning_rate(finetune_cfg) or hp.learning_rate
    module = FinetuningModule(
        model,
        spec.kind.evaluator(spec, dm.dev, hp),
        learning_rate=learning_rate,
        weight_decay=hp.weight_decay,
        warmup_steps=int(hp.warmup_fraction * steps),
        max_steps=steps,
    )
    key = f"val/{spec.selection_metric}"
    best = ModelCheckpoint(
        dirpath=work_dir / "ckpt",
        monitor=key,
        mode="max",
        save_top_k=1,
        filename="best",
        save_weights_only=True,
        enable_version_counter=False,
    )
    epochs_seen = EpochLog(f"{spec.name}/{init_label(init)}/seed{seed}", key, hp.epochs)
    if logger is not None:
        tracking.log_inputs(logger.run_id, task_inputs(spec, dm))
    # Gradient norm clipped at 1.0: BERT's fine-tuning recipe and transformers' Trainer default.
    trainer = L.Trainer(
        max_epochs=hp.epochs,
        accelerator=accelerator,
        devices=1,
        gradient_clip_val=1.0,
        precision=resolve_precision(precision, accelerator),
        logger=logger or False,
        callbacks=[best, epochs_seen],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        default_root_dir=str(work_dir),
    )
    started = time.perf_counter()
    with tracking.system_metrics(logger):
        trainer.fit(module, datamodule=dm)
    fit_seconds = time.perf_counter() - started
    kept = epochs_seen.best()
    log.info("%s: kept epoch %d of %d (best %s)", epochs_seen.name, kept["epoch"], hp.epochs, key)
    state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    metrics = {
        k.removeprefix("val/"): float(v)
        for k, v in scores(
            trainer.validate(module, dataloaders=dm.val_dataloader(), verbose=False)[0]
        ).items()
        if k != "val/loss"
    }
    predictions = {"dev": module.evaluator.predictions()}
    references = module.evaluator.references()
    if references is not None:
        predictions["dev_gold"] = references  # the report's confusion matrices and histograms
    for split in spec.extra_dev:
        try:
            extra = dm.encode_dev(split)
        except DatasetUnavailable as e:
            log.warning("%s: %s not scored: %s", spec.name, split, e)
            continue
        module.evaluator = spec.kind.evaluator(spec, extra, hp)
        extra_scores = scores(
            trainer.validate(module, dataloaders=dm.loader(extra.rows), verbose=False)[0]
        )
        metrics.update(
            {
                f"{split}_{k.removeprefix('val/')}": float(v)
                for k, v in extra_scores.items()
                if k != "val/loss"
            }
        )
    if save_model_to is not None:
        with atomic_dir(save_model_to) as tmp:
            family.save(model, tmp)
            copy_tokenizer_files(tok_dir, tmp)
            write_card(tmp, spec, hp, resolve_precision(precision, accelerator))
    shutil.rmtree(work_dir / "ckpt", ignore_errors=True)
    return {
        "task": spec.name,
        "init": init,
        "seed": seed,
        "metrics": metrics,
        "steps": steps,
        "learning_rate": learning_rate,
        "train_examples": len(dm.train.rows),
        "dev_examples": dm.dev.examples,
        "skipped_rows": dm.skipped,
        "fit_seconds": fit_seconds,
        "fit_examples_per_s": len(dm.train.rows) * hp.epochs / fit_seconds,
        "epochs": epochs_seen.epochs,
        "best_epoch": kept["epoch"],
        "predictions": predictions,
    }


# ------------------------------------------------------------------------------ one task


TRAINING_CODE = "bertpipe.stages.finetune"
"""The module whose import closure a fine-tuning result depends on (the finetune stage's code deps)."""


def _aggregate(runs: list[dict]) -> dict:
    names = sorted({k for r in runs for k in r["metrics"]})
    out = {}
    for name in names:
        values = [r["metrics"][name] for r in runs if name in r["metrics"]]
        out[name] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "n": len(values),
        }
    return out


def run_task(
    task: str,
    cfg: FinetuneConfig,
    model_cfg: ModelConfig,
    tracking_cfg: TrackingConfig,
    *,
    pretrained_dir: str | Path | None,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    work_dir: str | Path,
) -> dict:
    """Every init x seed of ``task``; writes ``out_dir`` (predictions/, model/) and returns the summary."""
    spec = resolve_task(task, cfg)
    hp = cfg.task_hparams_for(task)
    work_dir = Path(work_dir)
    summary: dict[str, Any] = {
        "task": task,
        "kind": spec.kind.name,
        "origin": spec.origin,
        "metrics": list(spec.metrics),
        "selection_metric": spec.selection_metric,
        "hparams": hp.model_dump(mode="json"),
        "seeds": list(cfg.seeds),
    }
    try:
        spec.load("train")
    except DatasetUnavailable as e:
        if task not in cfg.optional_tasks:
            raise DatasetUnavailable(
                f"finetune {task}: configured in finetune.tasks but its training data is "
                f"unavailable: {e} To skip it when that happens, list it in "
                "finetune.optional_tasks."
            ) from None
        log.warning("finetune %s: skipped (finetune.optional_tasks): %s", task, e)
        with atomic_dir(out_dir) as tmp:
            (tmp / "SKIPPED").write_text(f"{e}\n")
        return {**summary, "skipped": str(e)}

    parent = tracking.pipeline_run(tracking_cfg.experiment, pretrained_dir)
    results, best_by_init = {}, {}
    _, baseline_tok, _ = starting_point(cfg.inits[0], pretrained_dir, tokenizer_dir)
    data = TaskDataModule(spec, baseline_tok, hp, seed=0)
    data.setup()
    summary["constant_baseline"] = constant_baseline(spec, data, hp)
    shared = [
        task,
        hp.model_dump(mode="json"),
        cfg.squad_exclude_ambiguous,
        directory_identity(Path(tokenizer_dir)),
        code_identity(TRAINING_CODE),
    ]
    for init in cfg.inits:
        label = init_label(init)
        name, folder = scratch_family(init), checkpoint_dir(init, pretrained_dir)
        family = checkpoint_family(folder) if folder is not None else get_family(name or "bert")
        scratch_arch = getattr(model_cfg, family.section).model_dump(mode="json") if name else None
        blob = [
            *shared,
            init,
            scratch_arch,
            family.tuning(cfg),
            family.learning_rate(cfg),
            directory_identity(folder),
        ]
        fp = hashlib.sha256(json.dumps(blob).encode()).hexdigest()[:16]
        runs = []
        for seed in cfg.seeds:
            run_dir = work_dir / label / f"seed{seed}"
            cached = run_dir / "result.json"
            if cached.exists() and json.loads(cached.read_text()).get("fingerprint") == fp:
                log.info(
                    "finetune %s/%s/seed%d: done before, reusing %s", task, label, seed, cached
                )
                result = json.loads(cached.read_text())
            else:
                run_id_file = run_dir / "mlflow_run_id"
                if run_id_file.exists():  # a run of this seed was killed: trained anew
                    tracking.end_abandoned(
                        run_id_file.read_text().strip(), "killed; a rerun trained this seed anew"
                    )
                logger = tracking.make_logger(
                    tracking_cfg.experiment,
                    f"{task}/{label}/seed{seed}",
                    tags={
                        **tracking.run_tags("finetune"),
                        "mlflow.parentRunId": parent,
                        "bertpipe.task": task,
                        "bertpipe.init": label,
                    },
                )
                run_dir.mkdir(parents=True, exist_ok=True)
                run_id_file.write_text(logger.run_id + "\n")
                logger.log_hyperparams(
                    {
                        "task": task,
                        "init": init,
                        "seed": seed,
                        **hp.model_dump(mode="json"),
                        # the family's own rate, where finetune.<family>.learning_rate sets one
                        "learning_rate": family.learning_rate(cfg) or hp.learning_rate,
                        # defaults worth seeing: bf16 autocast where the CPU has it, AdamW eps
                        "precision": resolve_precision(cfg.precision, cfg.accelerator),
                        "adam_epsilon": FinetuningModule.ADAM_EPSILON,
                    }
                )
                result = finetune_once(
                    spec,
                    init,
                    hp,
                    seed,
                    run_dir,
                    pretrained_dir=pretrained_dir,
                    tokenizer_dir=tokenizer_dir,
                    model_cfg=model_cfg,
                    finetune_cfg=cfg,
                    precision=cfg.precision,
                    accelerator=cfg.accelerator,
                    logger=logger,
                    save_model_to=run_dir / "model",
                )
                result["fingerprint"] = fp
                tracking.log_metrics(logger, {f"dev/{k}": v for k, v in result["metrics"].items()})
                tracking.log_dict(logger, result["predictions"], "dev_predictions.json")
                tracking.set_terminated(logger)
                write_json(cached, result)
            log.info(
                "finetune %s/%s/seed%d: %s",
                task,
                label,
                seed,
                {k: round(v, 2) for k, v in result["metrics"].items()},
            )
            runs.append(result)
            # Keep only the best model of this init on disk (one per init, not one per seed).
            score = lambda r: r["metrics"][spec.selection_metric]
            best_run = max(runs, key=score)
            for r in runs:
                if r is not best_run:
                    shutil.rmtree(
                        work_dir / label / f"seed{r['seed']}" / "model", ignore_errors=True
                    )
        best_by_init[label] = best_run
        results[label] = {
            "init": init,
            "runs": [
                {
                    k: r[k]
                    for k in (
                        "seed",
                        "metrics",
                        "steps",
                        "learning_rate",
                        "train_examples",
                        "dev_examples",
                        "skipped_rows",
                    )
                }
                for r in runs
            ],
            "summary": _aggregate(runs),
            "best_seed": best_run["seed"],
        }

    with atomic_dir(out_dir) as tmp:
        for label, init_results in results.items():
            for r in init_results["runs"]:
                src = work_dir / label / f"seed{r['seed']}" / "result.json"
                write_json(
                    tmp / "predictions" / label / f"seed{r['seed']}.json",
                    json.loads(src.read_text())["predictions"],
                )
        first = init_label(cfg.inits[0])
        model_src = work_dir / first / f"seed{best_by_init[first]['seed']}" / "model"
        if model_src.exists():
            shutil.copytree(model_src, tmp / "model")
    return {
        **summary,
        "results": results,
        "exported_model": {
            "init": init_label(cfg.inits[0]),
            "seed": best_by_init[init_label(cfg.inits[0])]["seed"],
        },
    }
