"""Pretraining run: model + data + Lightning Trainer + MLflow, resumable, exported in HF format.

Owns the ``pretrain`` stage's behaviour: checks that data, tokenizer and model
agree; resumes automatically from the newest checkpoint of the same
configuration and code (``training/checkpoints.py``) and continues the same
MLflow run; exports the final model as a Hugging Face directory with its
tokenizer; writes metrics and curves for DVC.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from bertpipe import tracking
from bertpipe.atomic import atomic_dir, write_json
from bertpipe.code_deps import code_identity
from bertpipe.config import ModelConfig, PretrainConfig, TrackingConfig
from bertpipe.data.tokenizer import copy_tokenizer_files, load_tokenizer, resolve_dir
from bertpipe.errors import InputError
from bertpipe.models.hf_format import CHECKSUM, CheckpointError
from bertpipe.models.registry import ModelFamily, get_family
from bertpipe.training.callbacks import (
    CheckpointAfterValidation,
    CurveRecorder,
    FillMaskExamples,
    TokensPerSecond,
)
from bertpipe.training.checkpoints import fingerprint, latest_checkpoint, prepare_checkpoint_dir
from bertpipe.training.console import quiet_known_noise
from bertpipe.training.precision import resolve_precision
from bertpipe.training.pretraining_data import PretrainDataModule
from bertpipe.training.pretraining_module import PretrainingModule
from bertpipe.training.step_axis import scores

log = logging.getLogger(__name__)


PRETRAINING_CODE = "bertpipe.stages.pretrain"
"""The module whose import closure a pretraining result depends on (the pretrain stage's code deps)."""


def build_model(
    model_cfg: ModelConfig, vocab_size: int, pad_id: int
) -> tuple[torch.nn.Module, ModelFamily]:
    """The family's pretraining network: from ``model.init_from``, or freshly initialised."""
    family = get_family(model_cfg.family)
    if model_cfg.init_from:
        folder = resolve_dir(model_cfg.init_from)
        model = family.load(family.pretraining, folder)
        if model.config.vocab_size != vocab_size:
            raise CheckpointError(
                f"model.init_from {folder}: vocabulary size {model.config.vocab_size} does not match "
                f"the tokenizer's {vocab_size}; set tokenizer.reuse_from to the same checkpoint"
            )
        return model, family
    return family.pretraining(family.config(model_cfg, vocab_size, pad_id)), family


def unigram_baseline(data_dir: Path, not_eligible: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent maskable token of the validation split."""
    path = data_dir / "valid" / "input_ids.npy"
    if not path.exists():
        return float("nan")
    ids = np.load(path, mmap_mode="r")
    counts = np.bincount(np.asarray(ids), minlength=len(not_eligible))[: len(not_eligible)]
    counts[not_eligible] = 0
    return float(counts.max() / counts.sum())


def run_pretraining(
    model_cfg: ModelConfig,
    cfg: PretrainConfig,
    tracking_cfg: TrackingConfig,
    data_dir: str | Path,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    ckpt_dir: str | Path,
    metrics_path: str | Path,
    plots_dir: str | Path,
) -> dict:
    quiet_known_noise()
    data_dir, ckpt_dir, plots_dir = Path(data_dir), Path(ckpt_dir), Path(plots_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    tok = load_tokenizer(tokenizer_dir)
    meta = json.loads((data_dir / "meta.json").read_text())
    if meta["vocab_size"] != tok.get_vocab_size():
        raise CheckpointError(
            f"{data_dir}: built with a vocabulary of {meta['vocab_size']} tokens but the tokenizer "
            f"in {tokenizer_dir} has {tok.get_vocab_size()}; rerun pretrain_data (dvc repro)"
        )
    with_nsp = cfg.nsp_loss
    if with_nsp and not meta["config"]["nsp"]:
        raise InputError(
            f"{data_dir}: built without NSP labels (pretrain_data.nsp: false) but "
            "pretrain.nsp_loss is true; rerun pretrain_data (dvc repro)"
        )
    model, family = build_model(model_cfg, tok.get_vocab_size(), meta["special_ids"]["[PAD]"])
    module = PretrainingModule(
        model,
        optimizer=cfg.optimizer,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        adam_betas=cfg.adam_betas,
        adam_epsilon=cfg.adam_epsilon,
        warmup_steps=cfg.warmup_steps,
        max_steps=cfg.max_steps,
        nsp_loss=with_nsp,
    )
    dm = PretrainDataModule(
        data_dir, tok.get_vocab(), cfg.batch_size, cfg.seed, cfg.num_workers, with_nsp=with_nsp
    )

    prepare_checkpoint_dir(
        ckpt_dir, fingerprint(model_cfg, cfg, meta), code_identity(PRETRAINING_CODE), cfg.max_steps
    )
    resume = latest_checkpoint(ckpt_dir)
    run_id_file = ckpt_dir / "mlflow_run_id"
    run_id = run_id_file.read_text().strip() if run_id_file.exists() else None
    if run_id and resume is None:
        # Steps were logged to that run, but there is nothing to continue them from: a new
        # run, or every step would appear twice in its history.
        log.warning(
            "pretrain: no usable checkpoint in %s to resume MLflow run %s from (recorded "
            "in %s); starting a new run",
            ckpt_dir,
            run_id,
            run_id_file,
        )
        tracking.end_abandoned(run_id, "killed before its first checkpoint; a rerun started anew")
        run_id = None
    logger = tracking.make_logger(
        tracking_cfg.experiment,
        "pretrain",
        run_id,
        tracking.run_tags("pretrain"),
        run_id_origin=str(run_id_file),
    )
    curves = CurveRecorder(cfg.log_every_n_steps)
    fill = FillMaskExamples(tok, list(cfg.fill_mask_examples))
    trainer = L.Trainer(
        max_steps=cfg.max_steps,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        num_nodes=cfg.num_nodes,
        precision=resolve_precision(cfg.precision, cfg.accelerator),
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        gradient_clip_val=cfg.gradient_clip_val or None,
        val_check_interval=cfg.val_every_n_steps * cfg.accumulate_grad_batches,
        check_val_every_n_epoch=None,
        limit_val_batches=cfg.limit_val_batches,
        num_sanity_val_steps=0,
        log_every_n_steps=cfg.log_every_n_steps,
        deterministic=cfg.deterministic,
        use_distributed_sampler=False,
        logger=logger,
        default_root_dir=str(ckpt_dir),
        enable_model_summary=False,
        callbacks=[
            CheckpointAfterValidation(
                val_every_n_steps=cfg.val_every_n_steps if dm.has_validation else 0,
                dirpath=ckpt_dir,
                filename="step{step:07d}",
                auto_insert_metric_name=False,
                every_n_train_steps=cfg.checkpoint_every_n_steps,
                save_top_k=cfg.keep_last_k,
                monitor="step",
                mode="max",
                save_last=True,
            ),
            TokensPerSecond(),
            curves,
            fill,
        ],
    )
    if trainer.is_global_zero:
        run_id_file.write_text(logger.run_id + "\n")
        logger.log_hyperparams(
            {
                "model": model_cfg.model_dump(mode="json"),
                "pretrain": cfg.model_dump(mode="json"),
                "data": {k: meta["config"][k] for k in ("max_seq_length", "nsp", "masking_mode")},
                "n_parameters": sum(p.numel() for p in model.parameters()),
            }
        )
    if resume:
        log.info(
            "pretrain: resuming from %s, mid-epoch: the sampler skips the batches already "
            "trained on",
            resume,
        )
    trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
    final = (
        scores(trainer.validate(module, datamodule=dm, verbose=False)[0])
        if dm.has_validation
        else {}
    )

    metrics: dict[str, Any] = {k: float(v) for k, v in final.items()}
    metrics["val/unigram_baseline_acc"] = unigram_baseline(data_dir, dm.masker.not_eligible)
    metrics["steps"] = trainer.global_step
    if curves.train:
        metrics["train/tokens_per_s"] = float(
            np.median([r["tokens_per_s"] for r in curves.train if "tokens_per_s" in r])
        )
    metrics["fill_mask"] = {s: [t for t, _ in p[0]] for s, p in fill.latest.items()}
    if trainer.is_global_zero:
        with atomic_dir(out_dir) as tmp:
            family.save(model, tmp)
            copy_tokenizer_files(tokenizer_dir, tmp)
        write_json(metrics_path, metrics)
        _write_curves(curves, plots_dir)
        tracking.log_metrics(
            logger,
            {"final/" + k: v for k, v in metrics.items() if isinstance(v, float)},
            step=trainer.global_step,
        )
        checksum = (Path(out_dir) / CHECKSUM).read_text().split()[0]
        tracking.set_tag(logger, "bertpipe.model_sha256", checksum)
        if tracking_cfg.log_model:
            tracking.log_dir(logger, out_dir, "model")
        tracking.log_dir(logger, plots_dir, "curves")
        tracking.set_terminated(logger)
    return metrics


def _write_curves(curves: CurveRecorder, folder: Path) -> None:
    with atomic_dir(folder) as tmp:
        for name, rows in (("train", curves.train), ("val", curves.val)):
            cols = sorted({k for r in rows for k in r} - {"step"})
            lines = [",".join(["step", *cols])]
            lines += [",".join([str(r["step"]), *(str(r.get(c, "")) for c in cols)]) for r in rows]
            (tmp / f"{name}.csv").write_text("\n".join(lines) + "\n")
