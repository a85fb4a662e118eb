"""The checkpoint format of families with no ``transformers`` counterpart (elmo, rnn/lstm/gru).

A Hugging Face-style directory (``config.json`` with the family's ``model_type``
and the network class in ``architectures``, ``model.safetensors``, its checksum),
written and read by ``models/hf_format.py``. ``transformers`` cannot load these
(there is no such architecture there); bertpipe reloads them to identical outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from bertpipe.models.hf_format import (
    CheckpointError,
    load_state_dict,
    put_state,
    read_config,
    write_checkpoint,
)

PREFIXES = ("encoder.",)
"""A pretraining network's parameters sit under ``encoder.`` in its task networks."""


def save(model: Any, folder: str | Path) -> Path:
    config = {"architectures": [type(model).__name__], **asdict(model.config)}
    return write_checkpoint(folder, model.state_dict(), config)


def loader(config_cls: type) -> Callable[..., Any]:
    """The ``load(cls, folder, strict=False, **overrides)`` of a family whose config is ``config_cls``."""
    names = {f.name for f in fields(config_cls)}
    model_type = next(f.default for f in fields(config_cls) if f.name == "model_type")

    def load(cls: type, folder: str | Path, strict: bool = False, **overrides) -> Any:
        raw, path = read_config(folder)
        if raw.get("model_type") != model_type:
            raise CheckpointError(
                f"{path}: model_type {raw.get('model_type')!r}, expected {model_type!r}"
            )
        model = cls(config_cls(**{k: v for k, v in {**raw, **overrides}.items() if k in names}))
        model.loading_info = put_state(
            model, load_state_dict(folder), str(folder), strict, PREFIXES
        )
        return model

    return load
