"""BERT's Hugging Face checkpoint format: ``transformers``' config fields and parameter names.

Owns the mapping between our BERT networks and a Hugging Face BERT directory:
which ``config.json`` fields are supported, the architecture name and parameter
prefix of each class, old key names (TF-era ``gamma``/``beta``, a bare encoder
loaded into a model with heads and back), the tied MLM decoder, and shape checks
that name the offending tensor. ``load`` reads any BERT directory (``transformers``'
or ours); ``save`` writes one that ``transformers.AutoModel*`` loads.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, fields
from pathlib import Path
from typing import TypeVar

import torch

from bertpipe.models.bert import (
    BertConfig,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    BertPreTrainedModel,
)
from bertpipe.models.hf_format import (
    CheckpointError,
    load_state_dict,
    put_label_fields,
    read_config,
    write_checkpoint,
)

log = logging.getLogger(__name__)

Net = TypeVar("Net", bound=BertPreTrainedModel)

# class -> (transformers architecture, where BertModel's parameters live in its state dict)
ARCHITECTURES: dict[type, tuple[str, str]] = {
    BertModel: ("BertModel", ""),
    BertForPreTraining: ("BertForPreTraining", "bert."),
    BertForSequenceClassification: ("BertForSequenceClassification", "bert."),
    BertForTokenClassification: ("BertForTokenClassification", "bert."),
    BertForQuestionAnswering: ("BertForQuestionAnswering", "bert."),
}
TIED = {"cls.predictions.decoder.weight"}  # the MLM decoder is the word embeddings
INIT_ONLY = ("position_init", "position_init_std")  # how to start training, not architecture


def _architecture(model: BertPreTrainedModel) -> tuple[str, str]:
    return next(ARCHITECTURES[c] for c in type(model).__mro__ if c in ARCHITECTURES)


def config_from_hf(d: dict, origin: str = "config.json") -> BertConfig:
    """A ``BertConfig`` from ``config.json`` fields; unsupported variants are refused by name."""
    if d.get("model_type", "bert") != "bert":
        raise CheckpointError(
            f"{origin}: model_type {d.get('model_type')!r} is not supported; "
            "only BERT checkpoints (model_type 'bert') load here"
        )
    if d.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(
            f"{origin}: position_embedding_type {d['position_embedding_type']!r} is not supported"
        )
    if d.get("hidden_act", "gelu") not in ("gelu", "gelu_python"):  # exact erf GELU only
        raise CheckpointError(f"{origin}: hidden_act {d['hidden_act']!r} is not supported")
    names = {f.name for f in fields(BertConfig)}
    return BertConfig(**{k: v for k, v in d.items() if k in names})


def config_to_hf(config: BertConfig, architecture: str) -> dict:
    """``config.json`` fields for ``architecture`` (init-only fields dropped)."""
    d = {
        "architectures": [architecture],
        "model_type": "bert",
        "position_embedding_type": "absolute",
        **asdict(config),
    }
    put_label_fields(d)
    for key in INIT_ONLY:
        del d[key]
    return d


def load(cls: type[Net], folder: str | Path, strict: bool = False, **config_overrides) -> Net:
    """A ``cls`` network with the weights of a Hugging Face BERT directory.

    Weights the checkpoint lacks stay freshly initialised (a new task head) and are
    logged; ``strict=True`` raises instead. The model's ``loading_info`` holds
    ``{"missing_keys", "unexpected_keys"}``.
    """
    raw, path = read_config(folder)
    model = cls(config_from_hf({**raw, **config_overrides}, str(path)))
    model.loading_info = load_state(model, load_state_dict(folder), str(folder), strict)
    return model


def load_state(
    model: BertPreTrainedModel, state: dict[str, torch.Tensor], origin: str, strict: bool
) -> dict:
    """Put Hugging Face-named ``state`` into ``model``; returns the missing/unexpected keys."""
    prefix = _architecture(model)[1]
    own = model.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        # TF-era checkpoints name LayerNorm parameters gamma/beta
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight")
        key = key.replace("LayerNorm.beta", "LayerNorm.bias")
        if key.endswith("position_ids"):
            continue  # a buffer in older transformers, not a parameter
        if key not in own and prefix and not key.startswith(prefix) and prefix + key in own:
            key = prefix + key  # a bare BertModel checkpoint into a model with heads
        elif key not in own and key.startswith("bert.") and key[5:] in own:
            key = key[5:]  # a checkpoint with heads into a bare BertModel
        renamed[key] = value
    if "cls.predictions.decoder.bias" in renamed and "cls.predictions.bias" not in renamed:
        renamed["cls.predictions.bias"] = renamed["cls.predictions.decoder.bias"]
    renamed.pop("cls.predictions.decoder.bias", None)
    for key, value in renamed.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointError(
                f"{origin}: {key} has shape {tuple(value.shape)} in the checkpoint but "
                f"{tuple(own[key].shape)} in the model built from its config.json; the weights "
                "do not belong to this config"
            )
    missing = sorted(k for k in own if k not in renamed and k not in TIED)
    unexpected = sorted(k for k in renamed if k not in own)
    if strict and missing:
        raise CheckpointError(f"{origin}: missing weights {missing}")
    model.load_state_dict({k: v for k, v in renamed.items() if k in own}, strict=False)
    model.tie_weights()
    if missing:
        log.warning("%s: weights not in the checkpoint, freshly initialised: %s", origin, missing)
    if unexpected:
        log.warning("%s: checkpoint weights this model does not use: %s", origin, unexpected)
    return {"missing_keys": missing, "unexpected_keys": unexpected}


def save(model: BertPreTrainedModel, folder: str | Path) -> Path:
    """config.json + model.safetensors, loadable by ``transformers.AutoModel*``."""
    architecture = _architecture(model)[0]
    state = {k: v for k, v in model.state_dict().items() if k not in TIED}  # tied: stored once
    return write_checkpoint(folder, state, config_to_hf(model.config, architecture))
