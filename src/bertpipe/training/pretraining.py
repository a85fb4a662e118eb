"""Pretraining run: one family's network + objective + data + Lightning Trainer + MLflow, resumable.

Owns the ``pretrain@FAMILY`` stage's behaviour: checks that data, tokenizer and model
agree; turns ``pretrain.budget`` into the optimizer steps this family gets (the
same tokens for every family, or the same estimated FLOPs by each family's
formula) and records what it used (steps, tokens, FLOPs, seconds); resumes
automatically from the newest checkpoint of the same configuration and code
(``training/checkpoints.py``) and continues the same MLflow run; exports the
final model in its family's checkpoint format with the tokenizer; writes metrics
and curves for DVC.
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
from bertpipe.atomic import atomic_dir
from bertpipe.code_deps import code_identity
from bertpipe.config import ModelConfig, PretrainConfig, TrackingConfig
from bertpipe.data.tokenizer import copy_tokenizer_files, load_tokenizer, resolve_dir
from bertpipe.errors import InputError
from bertpipe.metrics_file import pretrain_metrics, write_summary_and_metrics
from bertpipe.models.hf_format import CHECKSUM, CheckpointError
from bertpipe.models.registry import ModelFamily, family_config, get_family
from bertpipe.training.callbacks import (
    CheckpointAfterValidation,
    CurveRecorder,
    FillMaskExamples,
    TokensPerSecond,
    WallClockBudget,
)
from bertpipe.training.checkpoints import (
    fingerprint,
    latest_checkpoint,
    mark_finished,
    prepare_checkpoint_dir,
)
from bertpipe.training.console import quiet_known_noise
from bertpipe.training.fingerprints import directory_identity
from bertpipe.training.objectives import OBJECTIVES
from bertpipe.training.precision import resolve_compile, resolve_precision
from bertpipe.training.pretraining_data import PretrainDataModule
from bertpipe.training.pretraining_module import PretrainingModule
from bertpipe.training.step_axis import scores

log = logging.getLogger(__name__)


PRETRAINING_CODE = "bertpipe.stages.pretrain"
"""The module whose import closure a pretraining result depends on (the pretrain stage's code deps)."""


def build_model(
    family: ModelFamily, model_cfg: ModelConfig, vocab_size: int, pad_id: int
) -> torch.nn.Module:
    """The family's pretraining network: from ``model.bert.init_from``, or freshly initialised."""
    if family.pretraining is None:
        raise InputError(
            f"pretrain.families: {family.name!r} has no pretraining (it is a supervised "
            "baseline: use it as the finetune init scratch:" + family.name + ")"
        )
    init_from = getattr(getattr(model_cfg, family.section), "init_from", None)
    if init_from:
        folder = resolve_dir(init_from)
        model = family.load(family.pretraining, folder)
        if model.config.vocab_size != vocab_size:
            raise CheckpointError(
                f"model.{family.section}.init_from {folder}: vocabulary size "
                f"{model.config.vocab_size} does not match the tokenizer's {vocab_size}; set "
                "tokenizer.reuse_from to the same checkpoint"
            )
        return model
    return family.pretraining(family_config(family, model_cfg, vocab_size, pad_id))


def budget_steps(
    cfg: PretrainConfig, tokens_per_step: int, flops_per_token: float, key: str = "pretrain.budget"
) -> int:
    """Optimizer steps the budget buys: ceil(tokens / tokens per step), or floor(FLOPs / FLOPs per step)."""
    b = cfg.budget
    if b.tokens is not None:
        return -(-b.tokens // tokens_per_step)
    assert b.flops is not None
    steps = int(b.flops // (flops_per_token * tokens_per_step))
    if steps < 1:
        raise InputError(
            f"{key}.flops ({b.flops:.3g}) does not buy one step: a step costs "
            f"{flops_per_token * tokens_per_step:.3g} FLOPs ({tokens_per_step} tokens x "
            f"{flops_per_token:.3g}); raise it"
        )
    return steps


def unigram_baseline(data_dir: Path, not_eligible: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent maskable token of the validation split."""
    path = data_dir / "valid" / "input_ids.npy"
    if not path.exists():
        return float("nan")
    ids = np.load(path, mmap_mode="r")
    counts = np.bincount(np.asarray(ids), minlength=len(not_eligible))[: len(not_eligible)]
    counts[not_eligible] = 0
    return float(counts.max() / counts.sum())


def run_name(family: str, section) -> str:
    """``pretrain FAMILY SIZE``: BERT's size name, else layers x width (``L4-H256``)."""
    c = section.model_dump()
    size = c.get("size") or "L{}-H{}".format(
        c.get("n_layer", c.get("num_layers")), c.get("n_embd", c.get("hidden_size"))
    )
    return f"pretrain {family} {size}"


def pretraining_inputs(data_dir: Path) -> list[dict]:
    """The lineage of a pretraining run: the corpus and the pretraining arrays, by the md5s
    ``dvc.lock`` records for them (their stages ran before this one), with row counts."""
    from bertpipe.data.pretrain_format import PretrainArrays

    digest = tracking.lock_out_md5(data_dir.as_posix()) or directory_identity(data_dir)[:32]
    inputs: list[dict] = [
        {
            "name": f"pretrain_data/{split}",
            "source": data_dir / split,
            "digest": digest,
            "rows": len(PretrainArrays(data_dir, split)),
            "context": "training" if split == "train" else "validation",
        }
        for split in ("train", "valid")
        if (data_dir / split).is_dir()
    ]
    corpus = tracking.lock_out_md5("data/corpus")
    if corpus:
        inputs.append(
            {
                "name": "corpus",
                "source": "data/corpus",
                "digest": corpus,
                "rows": None,
                "context": "source",
            }
        )
    return inputs


def use_packing(setting: bool | str, masked: bool, meta: dict) -> bool:
    """Whether batches are packed (``pretrain.packing``): for the masked-LM objectives only (the
    language models train on padded rows); ``auto`` packs them."""
    if not masked:
        if setting is True:
            log.info("pretrain: packing applies to masked-LM families; this one trains padded")
        return False
    padding = meta["splits"]["train"].get("padding_fraction") or 0.0
    log.info(
        "pretrain: the training data is %.1f%% padding as one instance a row; packing %s",
        100 * padding,
        "off" if setting is False else "on",
    )
    return setting is not False


def family_masking_rate(family: ModelFamily, section, masked: bool, meta: dict) -> float | None:
    """A family's own masking rate (``model.modern.mlm_probability``: ModernBERT's 30%) in place
    of the data's; None = the data's. Dynamic masking only: stored masks cannot change."""
    rate = getattr(section, "mlm_probability", None) if masked else None
    if rate is not None and meta["config"]["masking_mode"] != "dynamic":
        log.warning(
            "pretrain %s: model.%s.mlm_probability needs pretrain_data.masking_mode: dynamic; "
            "the stored masks are used",
            family.name,
            family.section,
        )
        return None
    return rate


USED = ("used/tokens", "used/flops", "used/seconds", "val/unigram_baseline_acc")
"""The summary numbers logged to MLflow once, at the last step."""


def run_pretraining(
    family_name: str,
    model_cfg: ModelConfig,
    cfg: PretrainConfig,
    tracking_cfg: TrackingConfig,
    data_dir: str | Path,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    ckpt_dir: str | Path,
    summary_path: str | Path,
    metrics_path: str | Path,
    plots_dir: str | Path,
) -> dict:
    """Pretrain one family at ``pretrain.budget``; export it, write its summary (returned),
    metrics file and curves."""
    quiet_known_noise()
    family = get_family(family_name, "pretrain.families")
    data_dir, ckpt_dir, plots_dir = Path(data_dir), Path(ckpt_dir), Path(plots_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    tok = load_tokenizer(tokenizer_dir)
    meta = json.loads((data_dir / "meta.json").read_text())
    if meta["vocab_size"] != tok.get_vocab_size():
        raise CheckpointError(
            f"{data_dir}: built with a vocabulary of {meta['vocab_size']} tokens but the tokenizer "
            f"in {tokenizer_dir} has {tok.get_vocab_size()}; rerun pretrain_data (dvc repro)"
        )
    assert family.objective is not None
    objective = OBJECTIVES[family.objective](with_nsp=cfg.nsp_loss)
    with_nsp = "nsp" in objective.terms()
    if with_nsp and not meta["config"]["nsp"]:
        raise InputError(
            f"{data_dir}: built without NSP labels (pretrain_data.nsp: false) but "
            "pretrain.nsp_loss is true; rerun pretrain_data (dvc repro)"
        )
    model = build_model(family, model_cfg, tok.get_vocab_size(), meta["special_ids"]["[PAD]"])
    if resolve_compile(cfg.compile, family.compiles_on, cfg.accelerator):
        log.info(
            "pretrain: compiling the %s network (pretrain.compile: %s)", family.name, cfg.compile
        )
        model.compile()  # in place: the state dict keeps its names, so checkpoints do too
    packed = use_packing(cfg.packing, objective.masked, meta)
    section = getattr(model_cfg, family.section)
    mlm_probability = family_masking_rate(family, section, objective.masked, meta)
    dm = PretrainDataModule(
        data_dir,
        tok.get_vocab(),
        cfg.batch_size,
        cfg.seed,
        cfg.num_workers,
        with_nsp=with_nsp,
        masked=objective.masked,
        packing=packed,
        packed_length=cfg.packed_length,
        mlm_probability=mlm_probability,
    )
    meta = dm.meta  # the masking the batches get (a family's own rate), for FLOPs and resume
    seq_len = int(meta["config"]["max_seq_length"])
    flops_per_token = family.flops_per_token(
        model.config, seq_len, objective.predicted_fraction(meta["config"])
    )
    ckpt_fingerprint = fingerprint(family.name, section, cfg, meta)
    run_id_file = ckpt_dir / "mlflow_run_id"
    curves = CurveRecorder(cfg.log_every_n_steps)
    fill = FillMaskExamples(tok, list(cfg.fill_mask_examples) if objective.masked else [])
    clock = WallClockBudget(cfg.budget.seconds)
    trainer = L.Trainer(
        max_steps=1,  # set from the budget below, once the world size is known
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
        logger=False,
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
            clock,
            curves,
            fill,
        ],
    )
    tokens_per_step = cfg.batch_size * cfg.accumulate_grad_batches * trainer.world_size * seq_len
    steps = budget_steps(cfg, tokens_per_step, flops_per_token)
    if cfg.warmup_steps >= steps:
        raise InputError(
            f"pretrain.warmup_steps ({cfg.warmup_steps}) is not below the {steps} steps "
            f"pretrain.budget buys {family.name}; lower it or raise the budget"
        )
    trainer.fit_loop.epoch_loop.max_steps = steps
    module = PretrainingModule(
        model,
        objective,
        optimizer=cfg.optimizer,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        adam_betas=cfg.adam_betas,
        adam_epsilon=cfg.adam_epsilon,
        warmup_steps=cfg.warmup_steps,
        max_steps=steps,
    )

    prepare_checkpoint_dir(ckpt_dir, ckpt_fingerprint, code_identity(PRETRAINING_CODE), steps)
    resume = latest_checkpoint(ckpt_dir)
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
        run_name(family.name, section),
        run_id,
        {**tracking.run_tags("pretrain"), "bertpipe.family": family.name},
        run_id_origin=str(run_id_file),
    )
    trainer.loggers = [logger]
    n_parameters = sum(p.numel() for p in model.parameters())
    if trainer.is_global_zero:
        run_id_file.write_text(logger.run_id + "\n")
        tracking.log_inputs(logger.run_id, pretraining_inputs(data_dir))
        logger.log_hyperparams(
            {
                "family": family.name,
                "model": section.model_dump(mode="json"),
                "pretrain": cfg.model_dump(mode="json"),
                "data": {
                    **{k: meta["config"][k] for k in ("max_seq_length", "nsp", "masking_mode")},
                    "packed": packed,
                },
                "n_parameters": n_parameters,
                "budget_steps": steps,
            }
        )
    if resume:
        log.info(
            "pretrain %s: resuming from %s, mid-epoch: the sampler skips the batches already "
            "trained on",
            family.name,
            resume,
        )
    with tracking.system_metrics(logger if trainer.is_global_zero else None):
        trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
    if trainer.is_global_zero and trainer.state.finished and not trainer.interrupted:
        mark_finished(ckpt_dir, trainer.global_step)
    final = (
        scores(trainer.validate(module, datamodule=dm, verbose=False)[0])
        if dm.has_validation
        else {}
    )

    metrics: dict[str, Any] = {k: float(v) for k, v in final.items()}
    metrics["val/unigram_baseline_acc"] = unigram_baseline(data_dir, dm.masker.not_eligible)
    metrics["steps"] = trainer.global_step
    metrics["family"] = family.name
    metrics["n_parameters"] = n_parameters
    tokens = trainer.global_step * tokens_per_step
    metrics["budget"] = {
        "unit": "tokens" if cfg.budget.tokens is not None else "flops",
        "given": cfg.budget.tokens if cfg.budget.tokens is not None else cfg.budget.flops,
        "seconds_limit": cfg.budget.seconds,
        "steps": steps,
        "tokens_per_step": tokens_per_step,
        "flops_per_token": flops_per_token,
    }
    metrics["used/tokens"] = float(tokens)
    metrics["used/flops"] = float(tokens * flops_per_token)
    metrics["used/seconds"] = float(clock.used)
    if curves.train:
        metrics["train/tokens_per_s"] = float(
            np.median([r["tokens_per_s"] for r in curves.train if "tokens_per_s" in r])
        )
    if objective.masked:
        metrics["fill_mask"] = {s: [t for t, _ in p[0]] for s, p in fill.latest.items()}
    if trainer.is_global_zero:
        with atomic_dir(out_dir) as tmp:
            family.save(model, tmp)
            copy_tokenizer_files(tokenizer_dir, tmp)
        write_summary_and_metrics(summary_path, metrics_path, metrics, pretrain_metrics(metrics))
        _write_curves(curves, plots_dir)
        # What the curves do not already hold (their last points are the final scores): what
        # the run used, and the baseline its accuracies read against.
        tracking.log_metrics(
            logger,
            {k: metrics[k] for k in USED},
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
