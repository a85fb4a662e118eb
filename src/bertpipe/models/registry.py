"""Model families: what ``pretrain.families`` and ``finetune.inits`` name, and everything the pipeline needs of one.

A family is a network file (``models/<family>.py``) and its checkpoint format,
described here by one ``ModelFamily`` entry: how its subsection of ``model``
becomes the network's config, the pretraining network and objective, one network per task head
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

from bertpipe.config import (
    BertModelConfig,
    ELMoModelConfig,
    FinetuneConfig,
    GPTModelConfig,
    ModelConfig,
    ModernModelConfig,
    RecurrentModelConfig,
)
from bertpipe.errors import InputError
from bertpipe.models import (
    bert,
    bert_checkpoint,
    elmo,
    gpt,
    gpt_checkpoint,
    modern,
    modern_checkpoint,
    native_checkpoint,
    recurrent,
)
from bertpipe.models.hf_format import CheckpointError, read_config


@dataclass(frozen=True)
class ModelFamily:
    """One family. Its networks are ``torch.nn.Module``s with a ``config`` (typed ``Any`` here: each
    family's config class is its own)."""

    name: str
    model_type: str
    """``model_type`` in a Hugging Face ``config.json`` of this family."""
    section: str
    """The subsection of ``model`` in params.yaml holding its architecture."""
    config: Callable[[Any, int, int], Any]
    """(its ``model`` subsection, vocabulary size, [PAD] id) -> the network's config."""
    pretraining: type[Any] | None
    """The network ``pretrain@FAMILY`` trains; None for the supervised-only baselines."""
    objective: str | None
    """Its pretraining objective (``training/objectives.py``): masked_lm, next_token, bidirectional_lm."""
    heads: dict[str, type[Any]]
    """Task head (``sequence``, ``token``, ``span``) -> the network fine-tuning trains."""
    load: Callable[..., Any]
    """(network class, checkpoint directory, strict=False, **config overrides) -> network."""
    save: Callable[[Any, str | Path], Path]
    """(network, directory) -> the directory, in the family's checkpoint format."""
    flops_per_token: Callable[[Any, int, float], float]
    """(network config, sequence length, fraction of positions projected onto the vocabulary)
    -> training FLOPs per token (forward + backward)."""
    tuning_section: str | None = None
    """The subsection of ``finetune`` with its fine-tuning settings (``learning_rate``, and
    config overrides of its task networks: GPT's auxiliary LM weight, ELMo's task model)."""
    compiles_on: tuple[str, ...] = ()
    """Device types where ``pretrain.compile: auto`` compiles its pretraining network: where
    ``torch.compile`` was measured to pay (bench/gpu_check.py, docs/benchmarks.md)."""

    def tuning(self, cfg: FinetuneConfig | None) -> dict:
        """Config overrides its task networks take from the ``finetune`` section."""
        if cfg is None or self.tuning_section is None:
            return {}
        return getattr(cfg, self.tuning_section).model_dump(exclude={"learning_rate"})

    def learning_rate(self, cfg: FinetuneConfig | None) -> float | None:
        """Its fine-tuning learning rate; None = the task's ``hparams.learning_rate``."""
        if cfg is None or self.tuning_section is None:
            return None
        return getattr(cfg, self.tuning_section).learning_rate

    def head(self, name: str) -> type[Any]:
        if name not in self.heads:
            raise InputError(
                f"model family {self.name!r} has no {name!r} task head; "
                f"it has {', '.join(self.heads)}"
            )
        return self.heads[name]


def _bert_config(c: BertModelConfig, vocab_size: int, pad_id: int) -> bert.BertConfig:
    return bert.BertConfig.from_size(
        c.size,
        vocab_size,
        hidden_dropout_prob=c.hidden_dropout_prob,
        attention_probs_dropout_prob=c.attention_probs_dropout_prob,
        max_position_embeddings=c.max_position_embeddings,
        pad_token_id=pad_id,
        position_init=c.position_init,
        position_init_std=c.position_init_std,
    )


def _modern_config(c: ModernModelConfig, vocab_size: int, pad_id: int) -> modern.ModernConfig:
    sized = {} if c.intermediate_size is None else {"intermediate_size": c.intermediate_size}
    return modern.ModernConfig.from_size(
        c.size,
        vocab_size,
        global_attn_every_n_layers=c.global_attn_every_n_layers,
        local_attention=c.local_attention,
        global_rope_theta=c.global_rope_theta,
        local_rope_theta=c.local_rope_theta,
        embedding_dropout=c.dropout,
        attention_dropout=c.dropout,
        mlp_dropout=c.dropout,
        max_position_embeddings=c.max_position_embeddings,
        pad_token_id=pad_id,
        **sized,
    )


def _gpt_config(c: GPTModelConfig, vocab_size: int, pad_id: int) -> gpt.GPTConfig:
    return gpt.GPTConfig(
        vocab_size=vocab_size,
        n_positions=c.n_positions,
        n_embd=c.n_embd,
        n_layer=c.n_layer,
        n_head=c.n_head,
        resid_pdrop=c.dropout,
        embd_pdrop=c.dropout,
        attn_pdrop=c.dropout,
        pad_token_id=pad_id,
    )


def _elmo_config(c: ELMoModelConfig, vocab_size: int, pad_id: int) -> elmo.ELMoConfig:
    return elmo.ELMoConfig(
        vocab_size=vocab_size,
        hidden_size=c.hidden_size,
        num_layers=c.num_layers,
        dropout=c.dropout,
        pad_token_id=pad_id,
    )


def _recurrent_config(cell: str) -> Callable[[RecurrentModelConfig, int, int], Any]:
    def build(c: RecurrentModelConfig, vocab_size: int, pad_id: int) -> recurrent.RecurrentConfig:
        return recurrent.RecurrentConfig(
            vocab_size=vocab_size,
            cell=cell,
            embedding_dim=c.embedding_dim,
            hidden_size=c.hidden_size,
            num_layers=c.num_layers,
            bidirectional=c.bidirectional,
            pooling=c.pooling,
            attention_dim=c.hidden_size,
            dropout=c.dropout,
            pad_token_id=pad_id,
        )

    return build


def _recurrent(cell: str) -> ModelFamily:
    return ModelFamily(
        cell,
        "bertpipe-recurrent",
        "recurrent",
        _recurrent_config(cell),
        None,
        None,
        {
            "sequence": recurrent.RecurrentForSequenceClassification,
            "token": recurrent.RecurrentForTokenClassification,
            "span": recurrent.RecurrentForQuestionAnswering,
        },
        native_checkpoint.loader(recurrent.RecurrentConfig),
        native_checkpoint.save,
        recurrent.flops_per_token,
        "recurrent",
    )


FAMILIES: dict[str, ModelFamily] = {
    f.name: f
    for f in [
        ModelFamily(
            "bert",
            "bert",
            "bert",
            _bert_config,
            bert.BertForPreTraining,
            "masked_lm",
            {
                "sequence": bert.BertForSequenceClassification,
                "token": bert.BertForTokenClassification,
                "span": bert.BertForQuestionAnswering,
            },
            bert_checkpoint.load,
            bert_checkpoint.save,
            bert.flops_per_token,
            compiles_on=("cuda",),  # H200, BERT-base packed: 1.21x (2026-12-04)
        ),
        ModelFamily(
            "modern",
            "modernbert",
            "modern",
            _modern_config,
            modern.ModernBertForMaskedLM,
            "masked_lm_only",
            {
                "sequence": modern.ModernBertForSequenceClassification,
                "token": modern.ModernBertForTokenClassification,
                "span": modern.ModernBertForQuestionAnswering,
            },
            modern_checkpoint.load,
            modern_checkpoint.save,
            modern.flops_per_token,
            compiles_on=("cuda",),  # H200, packed: 1.89x (2026-12-04)
        ),
        ModelFamily(
            "gpt",
            "gpt2",
            "gpt",
            _gpt_config,
            gpt.GPTLMHeadModel,
            "next_token",
            {
                "sequence": gpt.GPTForSequenceClassification,
                "token": gpt.GPTForTokenClassification,
                "span": gpt.GPTForQuestionAnswering,
            },
            gpt_checkpoint.load,
            gpt_checkpoint.save,
            gpt.flops_per_token,
            "gpt",
        ),
        ModelFamily(
            "elmo",
            "bertpipe-elmo",
            "elmo",
            _elmo_config,
            elmo.ELMoForPreTraining,
            "bidirectional_lm",
            {
                "sequence": elmo.ELMoForSequenceClassification,
                "token": elmo.ELMoForTokenClassification,
                "span": elmo.ELMoForQuestionAnswering,
            },
            native_checkpoint.loader(elmo.ELMoConfig),
            native_checkpoint.save,
            elmo.flops_per_token,
            "elmo",
        ),
        _recurrent("rnn"),
        _recurrent("lstm"),
        _recurrent("gru"),
    ]
}


def get_family(name: str, key: str = "family") -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise InputError(
            f"{key}: unknown model family {name!r}; choose one of {', '.join(FAMILIES)}"
        ) from None


def family_config(family: ModelFamily, model_cfg: ModelConfig, vocab_size: int, pad_id: int) -> Any:
    """The network config of ``family`` from its subsection of the ``model`` section."""
    return family.config(getattr(model_cfg, family.section), vocab_size, pad_id)


def checkpoint_family(folder: str | Path) -> ModelFamily:
    """The family of a checkpoint directory, from its ``config.json``."""
    config, path = read_config(folder)
    model_type = config.get("model_type", "bert")
    cell = config.get("cell")
    for family in FAMILIES.values():
        if family.model_type == model_type and (cell is None or family.name == cell):
            return family
    known = ", ".join(sorted({f"{f.model_type!r}" for f in FAMILIES.values()}))
    raise CheckpointError(
        f"{path}: model_type {model_type!r} is not supported; checkpoints of "
        f"model_type {known} load here"
    )
