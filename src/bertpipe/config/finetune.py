"""The ``finetune`` section of params.yaml: tasks, starting points, seeds, hyperparameters, user tasks.

Split from ``config/schema.py`` (which holds the other sections and the checks
across them) because it is the largest section; the rules are the same.
"""

from __future__ import annotations

import copy
import difflib
from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import Field, create_model, model_validator

from bertpipe.config.section import Section

GLUE_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
SQUAD_TASKS = ("squad", "squad_v2")
TAGGING_TASKS = ("ptb_pos", "conll2000_chunk")
"""Word tagging from the mirror's ``tagging/`` (``tasks/tagging.py``): WSJ POS, CoNLL-2000 chunking."""


class FinetuneHParams(Section):
    """Fine-tuning hyperparameters of one task (the paper's recipe: AdamW, linear warm-up and decay)."""

    learning_rate: float = Field(default=1e-4, gt=0.0)
    """Peak learning rate. The paper picks from 5e-5/3e-5/2e-5 for BERT-base; Turc et al. (2019) add 1e-4 and 3e-4 for compact models."""
    batch_size: int = Field(default=32, ge=1)
    """Examples (SQuAD: windows) per step."""
    epochs: int = Field(default=3, ge=1)
    """Passes over the training set; the best epoch by the dev metric is kept."""
    max_length: int = Field(default=128, ge=16, le=4096)
    """Tokens per example (pairs are truncated longest-first; SQuAD contexts are windowed)."""
    warmup_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Share of the steps with linear warm-up."""
    weight_decay: float = Field(default=0.01, ge=0.0)
    """AdamW weight decay (2-D weights only)."""
    max_train_examples: int | None = Field(default=500, ge=1)
    """Train on a fixed subset of this many examples (same subset for every seed and init); null = all (the base preset)."""
    max_eval_examples: int | None = Field(default=1000, ge=1)
    """Evaluate on the first this many dev examples; null = the whole dev set (the base preset)."""
    doc_stride: int = Field(default=128, ge=1)
    """SQuAD: tokens shared by consecutive windows of a long context."""
    max_answer_length: int = Field(default=30, ge=1)
    """SQuAD: longest answer span in tokens considered when decoding."""
    n_best: int = Field(default=20, ge=1)
    """SQuAD: start and end candidates per window considered when decoding."""
    packing: bool = True
    """Sequence tasks on networks that take packed rows (BERT): the examples of a training or dev batch share rows of at most max_length tokens (the width that costs least for their lengths) with block-diagonal attention, each pooled at its own [CLS]; the same batches, losses, gradients and dev predictions as padded, less padding computed. ``bertpipe predict`` batches as the model's dev set was scored."""
    group_by_length: bool = False
    """Training batches of similar lengths (shuffled within groups of 50 batches, the batch order shuffled; deterministic per seed): less padding for every network, but not the batches a plain shuffle gives (on CoLA the scores stayed within the seeds' spread, docs/LOG.md); dev order is unchanged."""


def _overrides_of(section: type[Section], name: str, doc: str) -> Any:
    """A section with every field of ``section`` optional (null = keep the shared value),
    same types and bounds, so the two cannot drift apart."""
    fields: dict[str, Any] = {}
    for key, info in section.model_fields.items():
        field = copy.copy(info)
        field.default = None
        field.description = f"Overrides ``hparams.{key}`` for this task."
        fields[key] = (Optional[info.annotation], field)  # noqa: UP045 - a runtime type object
    return create_model(name, __base__=Section, __doc__=doc, __module__=__name__, **fields)


if TYPE_CHECKING:  # the type checker sees the fields; at run time each is optional
    TaskHParams = FinetuneHParams
else:
    TaskHParams = _overrides_of(
        FinetuneHParams,
        "TaskHParams",
        "Per-task changes to ``finetune.hparams``; keys left out (or null) keep the shared value.",
    )


class UserTaskConfig(Section):
    """A task from local files, defined here without code: sentence (pair) classification, regression, or CoNLL token tagging."""

    kind: Literal["classification", "regression", "token_classification"]
    """What is predicted: a label per example, a number per example, or a tag per word."""
    train: str
    """Training file (csv, tsv, jsonl; CoNLL for token_classification)."""
    dev: str
    """Dev file, same format: it picks the epoch kept, and its scores are reported."""
    test: str | None = None
    """Test file, same format (optional): scored once with the kept epoch's weights and reported
    beside dev as ``test_<metric>``; never used for selection."""
    format: Literal["auto", "csv", "tsv", "jsonl", "conll"] = "auto"
    """File format; ``auto`` picks by extension (.csv, .tsv, .jsonl; anything else with token_classification is CoNLL)."""
    text_a: str = "sentence"
    """Column / key of the first text."""
    text_b: str | None = None
    """Column / key of the second text for sentence-pair tasks; null = single sentence."""
    label: str = "label"
    """Column / key of the label (or score, for regression)."""
    labels: tuple[str, ...] | None = Field(default=None, strict=False)
    """The declared label (tag) set; a value outside it is an error naming the line. null = the values found in the training file."""
    token_column: int = 0
    """CoNLL: column of the word (0-based; negative counts from the end)."""
    tag_column: int = -1
    """CoNLL: column of the tag (0-based; negative counts from the end)."""
    entity_f1: bool | None = None
    """Token tasks: score entity-level F1 over BIO tags (NER) instead of tag accuracy (POS); null = decide from the tags."""


class GPTTuning(Section):
    """How the ``pretrained:gpt`` / ``scratch:gpt`` starting points are fine-tuned (Radford et al., 2018)."""

    learning_rate: float | None = Field(default=None, gt=0.0)
    """Peak learning rate for GPT starting points; null = ``hparams.learning_rate``."""
    lm_loss_weight: float = Field(default=0.5, ge=0.0)
    """Weight of the auxiliary language-model loss on the task input (GPT-1: 0.5; 0 = off)."""


class RecurrentTuning(Section):
    """How the supervised baselines ``scratch:rnn|lstm|gru`` are trained."""

    learning_rate: float | None = Field(default=1e-3, gt=0.0)
    """Peak learning rate (Adam's usual 1e-3 for recurrent networks trained from scratch); null = ``hparams.learning_rate``."""


class ELMoTuning(Section):
    """The task model on ELMo's scalar mix (Peters et al., 2018) for ``pretrained:elmo``."""

    learning_rate: float | None = Field(default=1e-3, gt=0.0)
    """Peak learning rate (the task model on the mix starts from scratch); null = ``hparams.learning_rate``."""
    task_encoder: Literal["recurrent", "linear"] = "recurrent"
    """recurrent: the mix feeds a biLSTM with attention pooling (the paper's setup); linear: pooling and a linear head."""
    task_hidden_size: int = Field(default=128, ge=8)
    """The task biLSTM's size per direction."""
    task_pooling: Literal["attention", "mean", "max"] = "attention"
    """Sequence tasks: how the task encoder's states are pooled."""
    freeze_bilm: bool = True
    """Keep the pretrained biLM fixed (the paper); false fine-tunes it too."""


class FinetuneConfig(Section):
    """Stage ``finetune`` (one DVC stage per task, fanned out with ``foreach``) and ``bertpipe finetune``."""

    tasks: tuple[str, ...] = Field(
        default=GLUE_TASKS + SQUAD_TASKS + TAGGING_TASKS, strict=False, min_length=1
    )
    """Tasks to run: GLUE names, squad, squad_v2, ptb_pos, conll2000_chunk, or names under ``user_tasks``. Tasks without training data are skipped and reported."""
    inits: tuple[str, ...] = Field(
        default=("pretrained", "scratch", "pretrained:gpt", "pretrained:elmo", "scratch:lstm"),
        strict=False,
        min_length=1,
    )
    """Starting points: ``pretrained:FAMILY`` (that family's pretrain stage model; ``pretrained`` = ``pretrained:bert``), ``scratch:FAMILY`` (random init trained on the task alone: bert, gpt, elmo, or the baselines rnn, lstm, gru; ``scratch`` = ``scratch:bert``), a Hugging Face BERT or GPT-2 directory, or ``package:NAME``."""
    seeds: tuple[int, ...] = Field(default=(1, 2, 3), strict=False, min_length=1)
    """One run per seed; the report gives the median and the spread."""
    hparams: FinetuneHParams = FinetuneHParams()
    """Shared hyperparameters."""
    gpt: GPTTuning = GPTTuning()
    """GPT starting points."""
    elmo: ELMoTuning = ELMoTuning()
    """ELMo starting points."""
    recurrent: RecurrentTuning = RecurrentTuning()
    """The supervised recurrent baselines."""
    task_hparams: dict[str, TaskHParams] = Field(
        default={
            "squad": TaskHParams(max_length=192, doc_stride=64, epochs=2, max_eval_examples=300),
            "squad_v2": TaskHParams(max_length=192, doc_stride=64, epochs=2, max_eval_examples=300),
        },
        strict=False,
    )
    """Per-task changes to ``hparams`` (the base preset has the paper's SQuAD settings: 384-token windows, stride 128)."""
    user_tasks: dict[str, UserTaskConfig] = Field(default={}, strict=False)
    """Tasks from your own files; add the name to ``tasks`` to run it."""
    optional_tasks: tuple[str, ...] = Field(
        default=("qqp", "mnli", "qnli", "squad_v2"), strict=False
    )
    """Tasks skipped (and reported) when their training data is unavailable (the mirror has no QQP, MNLI or QNLI train, nor SQuAD v2.0 train); any other configured task without data is an error."""
    squad_exclude_ambiguous: bool = False
    """SQuAD v1.1 train in the mirror is rebuilt and 9,438 answer positions are guesses (listed beside it): true drops those questions."""
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "auto"
    """Training precision; ``auto`` is bf16-mixed where supported, else fp32."""
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "tpu", "mps"] = "auto"
    """Lightning accelerator."""

    @model_validator(mode="after")
    def _known_tasks(self) -> FinetuneConfig:
        known = set(GLUE_TASKS) | set(SQUAD_TASKS) | set(TAGGING_TASKS) | set(self.user_tasks)
        for i, name in enumerate(self.tasks):
            if name not in known:
                near = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ValueError(
                    f"tasks[{i}]: unknown task {name!r}{hint}; known: {', '.join(sorted(known))}; "
                    "define your own under finetune.user_tasks"
                )
        for i, name in enumerate(self.optional_tasks):
            if name not in known:
                raise ValueError(
                    f"optional_tasks[{i}]: unknown task {name!r}; known: {', '.join(sorted(known))}"
                )
        clash = set(self.user_tasks) & (set(GLUE_TASKS) | set(SQUAD_TASKS) | set(TAGGING_TASKS))
        if clash:
            raise ValueError(f"user_tasks: {sorted(clash)} are built-in task names; rename them")
        return self

    def task_hparams_for(self, task: str) -> FinetuneHParams:
        """``hparams`` with this task's changes applied."""
        over = self.task_hparams.get(task)
        if over is None:
            return self.hparams
        return self.hparams.model_copy(update=over.model_dump(exclude_none=True))
