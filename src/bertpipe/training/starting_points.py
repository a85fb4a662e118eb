"""Where a fine-tuning run starts: the ``finetune.inits`` names, resolved to a network and a tokenizer.

- ``pretrained:FAMILY`` (``pretrained`` = ``pretrained:bert``): that family's pretrain
  stage model directory;
- ``scratch:FAMILY`` (``scratch`` = ``scratch:bert``): the family's architecture from
  its ``model`` subsection, randomly initialised, with the pipeline's tokenizer
  (the baselines that show what pretraining buys; rnn, lstm and gru exist only so);
- a Hugging Face directory or ``package:NAME``: that checkpoint with its own tokenizer.

Which network a checkpoint holds is read from its ``config.json`` (the family
registry knows each family's ``model_type``); the task kind names the head.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bertpipe.config import FinetuneConfig, ModelConfig
from bertpipe.data.tokenizer import load_existing, load_tokenizer, resolve_dir
from bertpipe.errors import InputError
from bertpipe.models.registry import ModelFamily, checkpoint_family, family_config, get_family
from bertpipe.tasks.spec import TaskSpec

ALIASES = {"pretrained": "pretrained:bert", "scratch": "scratch:bert"}


def parse_init(init: str) -> tuple[str, str | None]:
    """(``pretrained`` | ``scratch`` | ``checkpoint``, family or None) of a ``finetune.inits`` name."""
    init = ALIASES.get(init, init)
    start, sep, family = init.partition(":")
    if sep and start in ("pretrained", "scratch"):
        return start, family
    return "checkpoint", None


def init_label(init: str) -> str:
    """A short name for a starting point (report columns, file names): ``pretrained`` and
    ``scratch`` for BERT's (as before other families existed), ``pretrained_gpt``, ``scratch_lstm``..."""
    short = {v: k for k, v in ALIASES.items()}
    if ALIASES.get(init, init) in short:
        return short[ALIASES.get(init, init)]
    start, family = parse_init(init)
    if family is not None:
        return f"{start}_{family}"
    if init.startswith("package:"):
        return init.split(":", 1)[1]
    return Path(init).expanduser().resolve().name


def checkpoint_dir(init: str, pretrained_dir: str | Path | None) -> Path | None:
    """The directory a starting point loads from; None for ``scratch:FAMILY``.

    ``pretrained:FAMILY`` is ``<pretrained_dir>/FAMILY``, the pretrain stage's output."""
    start, family = parse_init(init)
    if start == "scratch":
        return None
    if start == "pretrained":
        if pretrained_dir is None:
            raise InputError(
                f"init {init!r} needs the pretrain stages' model folder (--pretrained)"
            )
        folder = Path(pretrained_dir) / str(family)
        if not (folder / "config.json").exists():
            raise InputError(
                f"init {init!r}: no pretrained {family} model in {folder}; list {family!r} in "
                "pretrain.families and run its pretrain stage (dvc repro pretrain@" + f"{family})"
            )
        return folder
    return resolve_dir(init)


def starting_point(init: str, pretrained_dir: str | Path | None, tokenizer_dir: str | Path):
    """(checkpoint directory or None for scratch, its tokenizer, tokenizer directory)."""
    folder = checkpoint_dir(init, pretrained_dir)
    if folder is None:
        return None, load_tokenizer(tokenizer_dir), Path(tokenizer_dir)
    key = (
        f"the pretrain stage's model ({folder})"
        if parse_init(init)[0] == "pretrained"
        else f"init {init!r}"
    )
    return folder, load_existing(str(folder), key=key), folder


def scratch_family(init: str) -> str | None:
    """The family a ``scratch:FAMILY`` init builds; None for the other starting points."""
    start, family = parse_init(init)
    return family if start == "scratch" else None


def build_task_model(
    spec: TaskSpec,
    init: str,
    checkpoint: Path | None,
    model_cfg: ModelConfig | None,
    tokenizer,
    finetune_cfg: FinetuneConfig | None = None,
) -> tuple[Any, ModelFamily]:
    """The task's head on a checkpoint, or on the family's architecture from ``model`` (scratch)."""
    head = spec.kind.head_config(spec)
    if checkpoint is None:
        name = scratch_family(init) or "bert"
        if model_cfg is None:
            raise InputError(
                f"init {init!r} needs a model config (the model section of params.yaml)"
            )
        family = get_family(name, f"init {init!r}")
        config = family_config(
            family, model_cfg, tokenizer.get_vocab_size(), tokenizer.token_to_id("[PAD]") or 0
        )
        tuning = family.tuning(finetune_cfg)
        return family.head(spec.kind.head)(dataclasses.replace(config, **tuning, **head)), family
    family = checkpoint_family(checkpoint)
    tuning = family.tuning(finetune_cfg)
    return family.load(family.head(spec.kind.head), checkpoint, **tuning, **head), family
