"""Model families: what ``model.family`` in params.yaml names, and everything the pipeline needs of one.

A family is a network file (``models/<family>.py``) and its checkpoint format,
described here by one ``ModelFamily`` entry: how the ``model`` section becomes the
network's config, the pretraining network, one network per task head
(``sequence``: a label or score per example; ``token``: a label per token;
``span``: start/end logits), loading and saving Hugging Face directories, and the
training FLOPs per token. Training, fine-tuning and the tasks ask the registry;
nothing branches on the family name. Adding a family is a file and an entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertpipe.config import ModelConfig
from bertpipe.errors import InputError
from bertpipe.models import bert, bert_checkpoint
from bertpipe.models.hf_format import CheckpointError, read_config


@dataclass(frozen=True)
class ModelFamily:
    """One family. Its networks are ``torch.nn.Module``s with a ``config`` (typed ``Any`` here: each
    family's config class is its own)."""

    name: str
    model_type: str
    """``model_type`` in a Hugging Face ``config.json`` of this family."""
    config: Callable[[ModelConfig, int, int], Any]
    """(the ``model`` section, vocabulary size, [PAD] id) -> the network's config."""
    pretraining: type[Any]
    """The network the ``pretrain`` stage trains."""
    heads: dict[str, type[Any]]
    """Task head (``sequence``, ``token``, ``span``) -> the network fine-tuning trains."""
    load: Callable[..., Any]
    """(network class, checkpoint directory, strict=False, **config overrides) -> network."""
    save: Callable[[Any, str | Path], Path]
    """(network, directory) -> the directory, in the Hugging Face format."""
    flops_per_token: Callable[..., float]
    """Training FLOPs per token (forward + backward) for the network's config."""

    def head(self, name: str) -> type[Any]:
        if name not in self.heads:
            raise InputError(
                f"model family {self.name!r} has no {name!r} task head; "
                f"it has {', '.join(self.heads)}"
            )
        return self.heads[name]


def _bert_config(model_cfg: ModelConfig, vocab_size: int, pad_id: int) -> bert.BertConfig:
    return bert.BertConfig.from_size(
        model_cfg.size,
        vocab_size,
        hidden_dropout_prob=model_cfg.hidden_dropout_prob,
        attention_probs_dropout_prob=model_cfg.attention_probs_dropout_prob,
        max_position_embeddings=model_cfg.max_position_embeddings,
        pad_token_id=pad_id,
        position_init=model_cfg.position_init,
        position_init_std=model_cfg.position_init_std,
    )


FAMILIES: dict[str, ModelFamily] = {
    f.name: f
    for f in [
        ModelFamily(
            "bert",
            "bert",
            _bert_config,
            bert.BertForPreTraining,
            {
                "sequence": bert.BertForSequenceClassification,
                "token": bert.BertForTokenClassification,
                "span": bert.BertForQuestionAnswering,
            },
            bert_checkpoint.load,
            bert_checkpoint.save,
            bert.flops_per_token,
        ),
    ]
}


def get_family(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise InputError(
            f"model.family: unknown family {name!r}; choose one of {', '.join(FAMILIES)}"
        ) from None


def checkpoint_family(folder: str | Path) -> ModelFamily:
    """The family of a Hugging Face checkpoint directory, from its ``config.json``."""
    config, path = read_config(folder)
    model_type = config.get("model_type", "bert")
    for family in FAMILIES.values():
        if family.model_type == model_type:
            return family
    known = ", ".join(f"{f.model_type!r}" for f in FAMILIES.values())
    raise CheckpointError(
        f"{path}: model_type {model_type!r} is not supported; checkpoints of "
        f"model_type {known} load here"
    )
