"""Task kinds: one class per kind of prediction, owning everything that differs between them.

A kind owns its head (which network of the model family and its config: label
names, problem type), how examples are encoded into model rows, how rows are
collated into batches (the targets the head's loss takes), its evaluator (which
also decodes predictions for the predictions file), and, for tasks from your own
files, how a file row becomes an example and which metrics are reported.

- ``classification``: a label per example (or sentence pair), from the pooled [CLS];
- ``regression``: a score per example (GLUE STS-B);
- ``token_classification``: a tag per word (POS, NER), the first sub-word carries it;
- ``qa``: an answer span in a context (SQuAD), windows over long contexts.

Nothing outside this module branches on the kind; adding a kind is adding a class
to ``KINDS``.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from bertpipe.labels import IGNORE_INDEX
from bertpipe.tasks import user
from bertpipe.tasks.evaluators import SequenceEvaluator, SquadEvaluator, TokenEvaluator

if TYPE_CHECKING:
    from bertpipe.config import FinetuneHParams, UserTaskConfig
    from bertpipe.tasks.spec import TaskSpec


@dataclass
class Encoded:
    """One split encoded for the model."""

    rows: list[dict]
    """Model inputs (``input_ids``, ``token_type_ids``) and targets, one per example or window."""
    examples: int
    """Examples the rows came from (a QA example may give several windows)."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Examples left out, by reason."""
    context: Any = None
    """What the evaluator needs beyond the rows (QA: windows, examples, context offsets)."""


def pad_inputs(rows: list[dict], pad_id: int, multiple: int = 8) -> dict[str, torch.Tensor]:
    """``input_ids``/``token_type_ids`` padded to the longest row, rounded up to ``multiple``,
    and the ``attention_mask``."""
    T = -(-max(len(r["input_ids"]) for r in rows) // multiple) * multiple
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    types = torch.zeros_like(ids)
    attn = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n], types[i, :n], attn[i, :n] = (
            torch.tensor(r["input_ids"]),
            torch.tensor(r["token_type_ids"]),
            1,
        )
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": attn}


class TaskKind(ABC):
    """The interface every kind implements (see the module docstring)."""

    name: ClassVar[str]
    head: ClassVar[str]
    """The model family's network for it: ``sequence``, ``token`` or ``span``."""

    def num_labels(self, spec: TaskSpec) -> int:
        return len(spec.labels or ())

    def head_config(self, spec: TaskSpec) -> dict:
        """Config fields of the head (Hugging Face names), saved with the fine-tuned model."""
        return {"id2label": {str(i): n for i, n in enumerate(spec.labels or ())}}

    @abstractmethod
    def encode(self, tok, ds, hp: FinetuneHParams, train: bool) -> Encoded:
        """A split (a ``datasets.Dataset`` in the kind's schema, ``tasks/spec.py``) as model rows."""

    @abstractmethod
    def collate(self, rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
        """A batch: padded inputs plus the targets the head's loss takes."""

    @abstractmethod
    def evaluator(self, spec: TaskSpec, dev: Encoded, hp: FinetuneHParams):
        """The dev-set evaluator (``tasks/evaluators.py``), which also decodes predictions."""

    @staticmethod
    def _tokenizer(tok, hp: FinetuneHParams):
        """A copy that returns unpadded encodings truncated to ``max_length``."""
        tok = copy.deepcopy(tok)
        tok.no_padding()
        tok.enable_truncation(hp.max_length)
        return tok


class FromUserFiles(TaskKind):
    """A kind that ``finetune.user_tasks`` can declare: what it knows about their files."""

    user_file_format: ClassVar[str | None] = None
    """The format of a file whose extension does not tell (None: the extension must)."""

    @abstractmethod
    def user_rows(
        self, path, fmt: str, name: str, ucfg: UserTaskConfig
    ) -> Iterator[tuple[int, dict]]:
        """(line number, raw example) pairs of a user file."""

    @abstractmethod
    def user_labels(self, row: dict) -> list[str]:
        """The label (tag) strings of one raw example, for the label set found in a file."""

    @abstractmethod
    def user_example(
        self, row: dict, index: dict[str, int], where: str, name: str, ucfg: UserTaskConfig
    ) -> dict:
        """One raw example in the internal schema; a bad value is an error naming ``where``."""

    @abstractmethod
    def user_metrics(self, ucfg: UserTaskConfig, labels: tuple[str, ...] | None) -> tuple[str, ...]:
        """The metrics reported for a user task of this kind, the selection metric first."""


class SequenceClassification(FromUserFiles):
    """A label per example or sentence pair; rows ``text_a`` [, ``text_b``], ``label`` (class index)."""

    name = "classification"
    head = "sequence"
    problem_type = "single_label_classification"

    def head_config(self, spec: TaskSpec) -> dict:
        return {**super().head_config(spec), "problem_type": self.problem_type}

    def encode(self, tok, ds, hp: FinetuneHParams, train: bool) -> Encoded:
        tok = self._tokenizer(tok, hp)
        texts = (
            ds["text_a"]
            if "text_b" not in ds.column_names
            else list(zip(ds["text_a"], ds["text_b"], strict=True))
        )
        rows = [
            {"input_ids": e.ids, "token_type_ids": e.type_ids, "label": y}
            for e, y in zip(tok.encode_batch(texts), ds["label"], strict=True)
        ]
        return Encoded(rows, len(ds))

    def collate(self, rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
        return {**pad_inputs(rows, pad_id), "labels": torch.tensor([r["label"] for r in rows])}

    def evaluator(self, spec: TaskSpec, dev: Encoded, hp: FinetuneHParams) -> SequenceEvaluator:
        labels = spec.labels or ()
        return SequenceEvaluator(
            spec.metrics,
            self.num_labels(spec),
            lambda logits: logits.argmax(-1),
            lambda preds: [labels[i] for i in preds.tolist()],
        )

    def user_rows(
        self, path, fmt: str, name: str, ucfg: UserTaskConfig
    ) -> Iterator[tuple[int, dict]]:
        return user.table_examples(path, fmt, name, ucfg)

    def user_labels(self, row: dict) -> list[str]:
        return [str(row["label"])]

    def user_example(
        self, row: dict, index: dict[str, int], where: str, name: str, ucfg: UserTaskConfig
    ) -> dict:
        value = row["label"]
        if str(value) not in index:
            raise user.TaskDataError(
                f"{where}: label {value!r} is not in the declared set {list(index)} "
                f"(finetune.user_tasks.{name}.labels); add it or fix the line"
            )
        return user.check_texts({**row, "label": index[str(value)]}, where, ucfg)

    def user_metrics(self, ucfg: UserTaskConfig, labels: tuple[str, ...] | None) -> tuple[str, ...]:
        return ("acc", "macro_f1")


class Regression(SequenceClassification):
    """A score per example or sentence pair; rows like classification, ``label`` a float."""

    name = "regression"
    problem_type = "regression"

    def num_labels(self, spec: TaskSpec) -> int:
        return 1

    def head_config(self, spec: TaskSpec) -> dict:
        return {"id2label": {"0": "score"}, "problem_type": self.problem_type}

    def evaluator(self, spec: TaskSpec, dev: Encoded, hp: FinetuneHParams) -> SequenceEvaluator:
        return SequenceEvaluator(
            spec.metrics, 1, lambda logits: logits.squeeze(-1).float(), lambda preds: preds.tolist()
        )

    def user_labels(self, row: dict) -> list[str]:
        return []

    def user_example(
        self, row: dict, index: dict[str, int], where: str, name: str, ucfg: UserTaskConfig
    ) -> dict:
        try:
            score = float(row["label"])
        except (TypeError, ValueError):
            raise user.TaskDataError(
                f"{where}: score {row['label']!r} is not a number (column {ucfg.label!r})"
            ) from None
        return user.check_texts({**row, "label": score}, where, ucfg)

    def user_metrics(self, ucfg: UserTaskConfig, labels: tuple[str, ...] | None) -> tuple[str, ...]:
        return ("pearson", "spearman")


class TokenClassification(FromUserFiles):
    """A tag per word; rows ``tokens`` (words), ``tags`` (tag indices). The first sub-word of each
    word carries its tag; later sub-words and special tokens are ignored by the loss and metrics."""

    name = "token_classification"
    head = "token"
    user_file_format = "conll"

    def encode(self, tok, ds, hp: FinetuneHParams, train: bool) -> Encoded:
        tok = self._tokenizer(tok, hp)
        rows = []
        for enc, tags in zip(
            tok.encode_batch(ds["tokens"], is_pretokenized=True), ds["tags"], strict=True
        ):
            seen, labels = set(), []
            for w in enc.word_ids:
                labels.append(IGNORE_INDEX if w is None or w in seen else tags[w])
                if w is not None:
                    seen.add(w)
            rows.append({"input_ids": enc.ids, "token_type_ids": enc.type_ids, "tags": labels})
        return Encoded(rows, len(ds))

    def collate(self, rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
        batch = pad_inputs(rows, pad_id)
        tags = torch.full_like(batch["input_ids"], IGNORE_INDEX)
        for i, r in enumerate(rows):
            tags[i, : len(r["tags"])] = torch.tensor(r["tags"])
        return {**batch, "labels": tags}

    def evaluator(self, spec: TaskSpec, dev: Encoded, hp: FinetuneHParams) -> TokenEvaluator:
        return TokenEvaluator(spec.metrics, spec.labels or ())

    def user_rows(
        self, path, fmt: str, name: str, ucfg: UserTaskConfig
    ) -> Iterator[tuple[int, dict]]:
        if fmt != "conll":
            raise user.TaskDataError(
                f"{path}: token_classification reads CoNLL files (format: conll)"
            )
        for line_no, words, tags in user.conll_sentences(path, ucfg.token_column, ucfg.tag_column):
            yield line_no, {"tokens": words, "tags": tags}

    def user_labels(self, row: dict) -> list[str]:
        return row["tags"]

    def user_example(
        self, row: dict, index: dict[str, int], where: str, name: str, ucfg: UserTaskConfig
    ) -> dict:
        bad = next((t for t in row["tags"] if t not in index), None)
        if bad is not None:
            raise user.TaskDataError(
                f"{where}: tag {bad!r} is not in the declared set {list(index)} "
                f"(finetune.user_tasks.{name}.labels); add it or fix the line"
            )
        return {"tokens": row["tokens"], "tags": [index[t] for t in row["tags"]]}

    def user_metrics(self, ucfg: UserTaskConfig, labels: tuple[str, ...] | None) -> tuple[str, ...]:
        entity = ucfg.entity_f1 if ucfg.entity_f1 is not None else user.is_bio(labels or ())
        return ("entity_f1", "token_acc") if entity else ("token_acc",)


class ExtractiveQA(TaskKind):
    """An answer span in a context (SQuAD schema rows); windows of ``max_length`` tokens sharing
    ``doc_stride``, decoded with n-best spans of at most ``max_answer_length`` tokens."""

    name = "qa"
    head = "span"

    def num_labels(self, spec: TaskSpec) -> int:
        return 2

    def head_config(self, spec: TaskSpec) -> dict:
        return {"id2label": {"0": "start", "1": "end"}}

    def encode(self, tok, ds, hp: FinetuneHParams, train: bool) -> Encoded:
        from bertpipe.tasks import squad

        tok = copy.deepcopy(tok)
        tok.no_padding()
        tok.no_truncation()
        rows = ds.to_list()
        feats, skipped, offsets = squad.windows(tok, rows, hp.max_length, hp.doc_stride, train)
        if not train:
            for i, f in enumerate(feats):
                f["feature"] = i
        return Encoded(feats, len(rows), skipped, (feats, rows, offsets))

    def collate(self, rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
        batch = pad_inputs(rows, pad_id)
        for key in ("start_positions", "end_positions", "feature"):  # train rows / dev rows
            if key in rows[0]:
                batch[key] = torch.tensor([r[key] for r in rows])
        return batch

    def evaluator(self, spec: TaskSpec, dev: Encoded, hp: FinetuneHParams) -> SquadEvaluator:
        feats, rows, offsets = dev.context
        return SquadEvaluator(
            feats,
            rows,
            offsets,
            n_best=hp.n_best,
            max_answer_length=hp.max_answer_length,
            unanswerable=spec.unanswerable,
        )


USER_KINDS: dict[str, FromUserFiles] = {
    k.name: k for k in (SequenceClassification(), Regression(), TokenClassification())
}
"""The kinds ``finetune.user_tasks.NAME.kind`` may name."""
KINDS: dict[str, TaskKind] = {**USER_KINDS, "qa": ExtractiveQA()}
"""Every kind, by the name ``TaskSpec`` and the fine-tuning summaries use."""
