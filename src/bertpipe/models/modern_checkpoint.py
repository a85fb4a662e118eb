"""The modern family's Hugging Face format: transformers' ``ModernBert*`` config fields and names.

Owns the mapping between ``models/modern.py`` and a ModernBERT directory that
``transformers.ModernBertForMaskedLM`` (and ``...ForSequenceClassification``,
``...ForTokenClassification``, ``...ForQuestionAnswering``, ``ModernBertModel``) load.
Parameter names are the same on both sides (the encoder under ``model.``); the MLM
decoder is the token embedding (stored once, ``tie_word_embeddings``); ``layer_types``
and both rotary thetas are written explicitly so transformers builds the same
alternation. Variants ``modern.py`` does not compute (other activations, rotary
scaling, other poolings) are refused by name on load.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from bertpipe.models import modern
from bertpipe.models.hf_format import (
    CheckpointError,
    load_state_dict,
    put_label_fields,
    put_state,
    read_config,
    write_checkpoint,
)

ARCHITECTURES = {
    modern.ModernBertModel: "ModernBertModel",
    modern.ModernBertForMaskedLM: "ModernBertForMaskedLM",
    modern.ModernBertForSequenceClassification: "ModernBertForSequenceClassification",
    modern.ModernBertForTokenClassification: "ModernBertForTokenClassification",
    modern.ModernBertForQuestionAnswering: "ModernBertForQuestionAnswering",
}
TIED = frozenset({"decoder.weight"})
OURS_ONLY = ("global_rope_theta", "local_rope_theta")
"""Written as transformers' ``rope_parameters`` instead."""


def config_to_hf(c: modern.ModernConfig, architecture: str) -> dict:
    d: dict[str, Any] = {"architectures": [architecture], "model_type": "modernbert", **asdict(c)}
    for key in OURS_ONLY:
        del d[key]
    d["rope_parameters"] = {
        "full_attention": {"rope_type": "default", "rope_theta": c.global_rope_theta},
        "sliding_attention": {"rope_type": "default", "rope_theta": c.local_rope_theta},
    }
    d["tie_word_embeddings"] = True
    d["sparse_prediction"] = False
    d["cls_token_id"] = d["bos_token_id"] = d["sep_token_id"] = d["eos_token_id"] = None
    put_label_fields(d)
    return d


def config_from_hf(d: dict, origin: str) -> modern.ModernConfig:
    if d.get("model_type") != "modernbert":
        raise CheckpointError(
            f"{origin}: model_type {d.get('model_type')!r}, expected 'modernbert'"
        )
    rope = d.get("rope_parameters") or {}
    thetas = {}
    for kind, key, legacy in (
        ("full_attention", "global_rope_theta", "global_rope_theta"),
        ("sliding_attention", "local_rope_theta", "local_rope_theta"),
    ):
        params = rope.get(kind) or {}
        if params.get("rope_type", "default") != "default":
            raise CheckpointError(
                f"{origin}: rope_parameters.{kind}.rope_type {params['rope_type']!r} is not "
                "supported (modern.py computes the default rotary embedding)"
            )
        if "rope_theta" in params:
            thetas[key] = params["rope_theta"]
        elif legacy in d:
            thetas[key] = d[legacy]
    if d.get("classifier_pooling", "cls") not in ("cls", "mean"):
        raise CheckpointError(f"{origin}: classifier_pooling {d['classifier_pooling']!r}")
    names = {f.name for f in fields(modern.ModernConfig)} - set(OURS_ONLY)
    kwargs = {k: v for k, v in d.items() if k in names}
    if d.get("pad_token_id") is None:
        kwargs["pad_token_id"] = 0
    try:
        return modern.ModernConfig(**kwargs, **thetas)
    except ValueError as e:
        raise CheckpointError(f"{origin}: {e}") from None


def save(model: Any, folder: str | Path) -> Path:
    """config.json + model.safetensors, loadable by transformers' ModernBert classes."""
    state = {k: v for k, v in model.state_dict().items() if k not in TIED}
    return write_checkpoint(folder, state, config_to_hf(model.config, ARCHITECTURES[type(model)]))


def load(cls: type, folder: str | Path, strict: bool = False, **overrides) -> Any:
    """A ``cls`` network with the weights of a ModernBERT directory (ours or transformers')."""
    raw, path = read_config(folder)
    model = cls(config_from_hf({**raw, **overrides}, str(path)))
    state = {k: v for k, v in load_state_dict(folder).items() if k not in TIED}
    model.loading_info = put_state(model, state, str(folder), strict, ("model.",), TIED)
    model.tie_weights()
    return model
