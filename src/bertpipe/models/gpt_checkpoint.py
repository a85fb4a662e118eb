"""GPT's Hugging Face checkpoint format: transformers' ``GPT2*`` config fields and parameter names.

Owns the mapping between ``models/gpt.py`` and a GPT-2 directory that
``transformers.GPT2LMHeadModel`` (and ``GPT2ForSequenceClassification``,
``GPT2ForTokenClassification``, ``GPT2ForQuestionAnswering``) load: the encoder
lives under ``transformer.``, the projections are transformers' ``Conv1D``
(weights stored transposed, (in, out)), the LM head is the token embedding
(stored once), the sequence head is ``score``. Variants ``gpt.py`` does not
compute (other activations, inverse-layer attention scaling, cross-attention,
untied heads) are refused by name, on export and on load.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from bertpipe.models import gpt
from bertpipe.models.hf_format import (
    CheckpointError,
    load_state_dict,
    put_label_fields,
    put_state,
    read_config,
    write_checkpoint,
)

ARCHITECTURES = {
    gpt.GPTLMHeadModel: "GPT2LMHeadModel",
    gpt.GPTForSequenceClassification: "GPT2ForSequenceClassification",
    gpt.GPTForTokenClassification: "GPT2ForTokenClassification",
    gpt.GPTForQuestionAnswering: "GPT2ForQuestionAnswering",
}
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
RECIPE = ("lm_loss_weight",)  # how to fine-tune, not architecture: not in config.json
FIXED = {  # GPT2Config fields gpt.py computes one way only
    "activation_function": "gelu_new",
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "add_cross_attention": False,
    "tie_word_embeddings": True,
}


def check_exportable(c: gpt.GPTConfig, key: str = "model.gpt") -> None:
    """Refuse a shape transformers' GPT-2 cannot hold, naming the params key."""
    if c.n_embd % c.n_head:
        raise CheckpointError(
            f"{key}.n_head: {c.n_head} does not divide {key}.n_embd ({c.n_embd}); transformers' "
            "GPT2 splits the width evenly across heads, so this shape cannot be exported"
        )
    if c.activation_function != "gelu_new":
        raise CheckpointError(
            f"{key}: activation_function {c.activation_function!r} is not gelu_new; gpt.py "
            "computes GPT-2's tanh GELU only"
        )


def _to_hf_key(key: str, model: Any) -> str:
    key = key.replace("encoder.", "transformer.", 1) if key.startswith("encoder.") else key
    if isinstance(model, gpt.GPTForSequenceClassification) and key.startswith("classifier."):
        key = "score." + key[len("classifier.") :]
    return key


def _from_hf_key(key: str, model: Any) -> str:
    if not isinstance(model, gpt.GPTLMHeadModel) and key.startswith("transformer."):
        key = "encoder." + key[len("transformer.") :]
    if isinstance(model, gpt.GPTForSequenceClassification) and key.startswith("score."):
        key = "classifier." + key[len("score.") :]
    return key


def config_to_hf(c: gpt.GPTConfig, architecture: str) -> dict:
    d = {"architectures": [architecture], "model_type": "gpt2", **asdict(c), **FIXED}
    d["n_ctx"] = c.n_positions
    d["bos_token_id"] = d["eos_token_id"] = None  # the pipeline's tokenizer has no such tokens
    for key in RECIPE:
        del d[key]
    put_label_fields(d)
    return d


def config_from_hf(d: dict, origin: str) -> gpt.GPTConfig:
    if d.get("model_type") != "gpt2":
        raise CheckpointError(f"{origin}: model_type {d.get('model_type')!r}, expected 'gpt2'")
    for key, value in FIXED.items():
        if d.get(key, value) != value:
            raise CheckpointError(
                f"{origin}: {key} = {d[key]!r} is not supported (gpt.py computes {key} = {value!r})"
            )
    names = {f.name for f in fields(gpt.GPTConfig)}
    if d.get("pad_token_id") is None:
        d = {**d, "pad_token_id": 0}
    try:
        return gpt.GPTConfig(**{k: v for k, v in d.items() if k in names})
    except ValueError as e:
        raise CheckpointError(f"{origin}: {e}") from None


def save(model: Any, folder: str | Path) -> Path:
    """config.json + model.safetensors, loadable by ``transformers``' GPT2 classes."""
    check_exportable(model.config)
    state = {}
    for key, value in model.state_dict().items():
        hf = _to_hf_key(key, model)
        state[hf] = value.t() if hf.endswith(CONV1D) else value
    return write_checkpoint(folder, state, config_to_hf(model.config, ARCHITECTURES[type(model)]))


def load(cls: type, folder: str | Path, strict: bool = False, **overrides) -> Any:
    """A ``cls`` network with the weights of a Hugging Face GPT-2 directory (ours or transformers')."""
    raw, path = read_config(folder)
    model = cls(config_from_hf({**raw, **overrides}, str(path)))
    state: dict[str, torch.Tensor] = {}
    for key, value in load_state_dict(folder).items():
        if key.endswith((".attn.bias", ".attn.masked_bias")) or key == "lm_head.weight":
            continue  # transformers' causal-mask buffers; the head is tied to wte
        ours = _from_hf_key(key, model)
        state[ours] = value.t() if key.endswith(CONV1D) else value
    model.loading_info = put_state(model, state, str(folder), strict, ("encoder.",))
    return model
