"""Pretraining checkpoints: which ones a rerun may resume from, and the newest complete one.

Checkpoints live outside DVC's outputs (``checkpoints/pretrain``) because DVC
deletes a stage's outputs before running it, and a failed run must keep them.
A ``fingerprint.json`` beside them records the configuration and the training
code they belong to: changed params or data start a fresh run instead of
resuming a stale one, and so does changed code once the run had finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import zipfile
from pathlib import Path

import torch

from bertpipe.atomic import write_json
from bertpipe.config import PretrainConfig
from bertpipe.config.section import Section

log = logging.getLogger("bertpipe.training.pretraining")


def fingerprint(family: str, model_cfg: Section, cfg: PretrainConfig, meta: dict) -> str:
    """What a checkpoint's weights depend on: the family, its model subsection, the pretrain
    section, tokenizer and data."""
    # Settings that do not change the weights (workers, logging cadence) are left out. The
    # schedule (max_steps, warm-up) is in: the learning rate at every step depends on it, so a
    # checkpoint made for 40 steps is not the start of a 60-step run, nor a 30-step model.
    run = cfg.model_dump(
        mode="json",
        exclude={
            "num_workers",
            "log_every_n_steps",
            "fill_mask_examples",
            "limit_val_batches",
            "val_every_n_steps",
        },
    )
    blob = json.dumps(
        {
            "family": family,
            "model": model_cfg.model_dump(mode="json"),
            "pretrain": run,
            "tokenizer": meta["tokenizer_sha256"],
            "data": meta["splits"],
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def prepare_checkpoint_dir(ckpt_dir: Path, config_hash: str, code: str, max_steps: int) -> None:
    """Keep the checkpoints a rerun may resume from; delete the rest.

    Changed params or data: start afresh. Changed training code (``code``): an
    unfinished run still resumes (a crash fixed mid-run keeps its progress, with a
    warning), but a finished one is trained again, or the rerun DVC starts after a
    code change would hand back the old code's model under the new code's hash.
    """
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    fp = ckpt_dir / "fingerprint.json"
    stored = json.loads(fp.read_text()) if fp.exists() else {}
    fresh = None
    if stored and stored.get("fingerprint") != config_hash:
        fresh = "params or data changed since the checkpoints in %s were made; starting a fresh run"
    elif (
        stored
        and stored.get("code") != code
        and (latest := latest_checkpoint(ckpt_dir)) is not None
    ):
        # the last checkpoint may predate the end (one every val_every_n_steps): the run's
        # own record of its final step says whether it had finished
        if max(checkpoint_step(latest), stored.get("finished_steps", 0)) >= max_steps:
            fresh = (
                "the training code changed since the finished run in %s; training again so the "
                "model is the current code's"
            )
        else:
            log.warning(
                "pretrain: the training code changed since the run in %s started; resuming "
                "it (delete the folder to start afresh)",
                ckpt_dir,
            )
    if fresh:
        log.warning("pretrain: " + fresh, ckpt_dir)
        for p in ckpt_dir.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    write_json(fp, {"fingerprint": config_hash, "code": code})


def mark_finished(ckpt_dir: Path, steps: int) -> None:
    """Record in ``fingerprint.json`` that the run trained ``steps`` steps to its end."""
    fp = ckpt_dir / "fingerprint.json"
    write_json(fp, {**json.loads(fp.read_text()), "finished_steps": steps})


def checkpoint_step(path: Path) -> int:
    """The optimizer step a Lightning checkpoint was saved at (memory-mapped: weights stay on disk)."""
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The usable checkpoint of the highest step; of equal steps ``last.ckpt``, which Lightning
    saves after the top-k bookkeeping (a step file saved at the same step does not yet count
    itself among the kept ones, and resumed from, it would never be deleted).

    A checkpoint that is a broken zip (a process killed while writing), fails its CRC, or
    is a zip but no Lightning checkpoint is deleted with a warning: it can never be
    resumed from, and left on disk it would hide behind ``keep_last_k``.
    """
    best: tuple[int, bool, Path] | None = None
    for path in sorted(ckpt_dir.glob("*.ckpt")):
        try:
            with zipfile.ZipFile(path) as z:
                if z.testzip() is not None:
                    raise zipfile.BadZipFile("a member fails its CRC check")
            step = checkpoint_step(path)
        except Exception as e:
            log.warning(
                "pretrain: %s is not a usable checkpoint (%s: %s); deleting it and trying "
                "the others",
                path,
                type(e).__name__,
                e,
            )
            path.unlink(missing_ok=True)
            continue
        key = (step, path.name == "last.ckpt", path)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best else None
