"""Where a fine-tuning run starts: the ``finetune.inits`` names, resolved to a network and a tokenizer.

- ``pretrained``: the pretrain stage's model directory;
- ``scratch``: the ``model`` section's architecture, randomly initialised, with the
  pipeline's tokenizer (the baseline that shows what pretraining buys);
- a Hugging Face directory or ``package:NAME``: that checkpoint with its own tokenizer.

Which network a checkpoint holds is read from its ``config.json`` (the family
registry knows each family's ``model_type``); the task kind names the head.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bertpipe.config import ModelConfig
from bertpipe.data.tokenizer import load_existing, load_tokenizer, resolve_dir
from bertpipe.errors import InputError
from bertpipe.models.registry import ModelFamily, checkpoint_family, get_family
from bertpipe.tasks.spec import TaskSpec


def init_label(init: str) -> str:
    """A short name for a starting point (report columns, file names)."""
    if init in {"pretrained", "scratch"}:
        return init
    if init.startswith("package:"):
        return init.split(":", 1)[1]
    return Path(init).expanduser().resolve().name


def checkpoint_dir(init: str, pretrained_dir: str | Path | None) -> Path | None:
    """The directory a starting point loads from; None for ``scratch``."""
    if init == "scratch":
        return None
    if init == "pretrained":
        if pretrained_dir is None:
            raise InputError(
                "init 'pretrained' needs the pretrain stage's model directory (--pretrained)"
            )
        return Path(pretrained_dir)
    return resolve_dir(init)


def starting_point(init: str, pretrained_dir: str | Path | None, tokenizer_dir: str | Path):
    """(checkpoint directory or None for scratch, its tokenizer, tokenizer directory)."""
    folder = checkpoint_dir(init, pretrained_dir)
    if folder is None:
        return None, load_tokenizer(tokenizer_dir), Path(tokenizer_dir)
    key = "the pretrain stage's model (--pretrained)" if init == "pretrained" else f"init {init!r}"
    return folder, load_existing(str(folder), key=key), folder


def build_task_model(
    spec: TaskSpec, checkpoint: Path | None, model_cfg: ModelConfig | None, tokenizer
) -> tuple[Any, ModelFamily]:
    """The task's head on a checkpoint, or on the ``model`` section's architecture (scratch)."""
    head = spec.kind.head_config(spec)
    if checkpoint is None:
        if model_cfg is None:
            raise InputError(
                "init 'scratch' needs a model config (the model section of params.yaml)"
            )
        family = get_family(model_cfg.family)
        config = family.config(
            model_cfg, tokenizer.get_vocab_size(), tokenizer.token_to_id("[PAD]") or 0
        )
        return family.head(spec.kind.head)(dataclasses.replace(config, **head)), family
    family = checkpoint_family(checkpoint)
    return family.load(family.head(spec.kind.head), checkpoint, **head), family
