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
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from bertpipe.data.packing import pack_padded
from bertpipe.labels import IGNORE_INDEX
from bertpipe.tasks import inputs, user
from bertpipe.tasks.evaluators import SequenceEvaluator, SquadEvaluator, TokenEvaluator

if TYPE_CHECKING:
    from bertpipe.config import FinetuneHParams, UserTaskConfig
    from bertpipe.tasks.spec import TaskSpec


class PredictionCollector:
    """One prediction pass: ``add`` takes a batch and its logits and returns the records it can
    already give (in input order); ``finish`` returns the rest (QA decodes at the end)."""

    def add(self, batch: dict, logits: torch.Tensor) -> list[dict]:
        return []

    def finish(self) -> list[dict]:
        return []


class _SequenceCollector(PredictionCollector):
    def __init__(self, labels: tuple[str, ...] | None):
        self.labels = labels

    def add(self, batch: dict, logits: torch.Tensor) -> list[dict]:
        logits = logits.detach().float().cpu()
        if self.labels is None:  # regression
            return [{"score": float(v)} for v in logits.squeeze(-1).tolist()]
        probs = logits.softmax(-1)
        return [
            {
                "label": self.labels[int(p.argmax())],
                "probabilities": {
                    n: round(float(v), 6) for n, v in zip(self.labels, p, strict=True)
                },
            }
            for p in probs
        ]


class _TokenCollector(PredictionCollector):
    def __init__(self, labels: tuple[str, ...], rows: list[dict]):
        self.labels, self.rows, self.done = labels, rows, 0

    def add(self, batch: dict, logits: torch.Tensor) -> list[dict]:
        out = []
        preds, firsts = logits.argmax(-1).cpu(), batch["labels"].cpu() != IGNORE_INDEX
        for p, keep in zip(preds, firsts, strict=True):
            words = self.rows[self.done]["tokens"]
            tags: list[str | None] = [self.labels[i] for i in p[keep].tolist()]
            # words past max_length have no sub-word in the model's input: no tag
            out.append({"tokens": words, "tags": tags + [None] * (len(words) - len(tags))})
            self.done += 1
        return out


class _SpanCollector(PredictionCollector):
    def __init__(self, spec: TaskSpec, encoded: Encoded, hp: FinetuneHParams):
        self.features, self.rows, self.offsets = encoded.context
        self.hp, self.unanswerable = hp, spec.unanswerable
        self.logits: dict[int, Any] = {}

    def add(self, batch: dict, logits: torch.Tensor) -> list[dict]:
        spans = logits.detach().float().cpu().numpy()
        for f, row in zip(batch["feature"].tolist(), spans, strict=True):
            self.logits[f] = row[: len(self.features[f]["input_ids"])]
        return []

    def finish(self) -> list[dict]:
        from bertpipe.tasks import squad

        order = sorted(self.logits)
        found: dict[str, tuple[int, float]] = {}
        answers, null_diff = squad.decode(
            [self.features[f] for f in order],
            [self.logits[f][:, 0] for f in order],
            [self.logits[f][:, 1] for f in order],
            self.rows,
            self.offsets,
            n_best=self.hp.n_best,
            max_answer_length=self.hp.max_answer_length,
            spans=found,
        )
        out = []
        for row in self.rows:
            start, score = found[row["id"]]
            record = {"id": row["id"], "answer": answers[row["id"]], "start": start, "score": score}
            if self.unanswerable:
                record["no_answer_score"] = null_diff[row["id"]]
            out.append(record)
        return out


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
    packs: ClassVar[bool] = False
    """Its batches may be packed (one output per example, at the example's [CLS])."""

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

    def batch(self, rows: list[dict], pad_id: int, pack_into: int | None = None) -> dict:
        """``collate``'s batch, as the network takes it: for a kind that ``packs``, with
        ``pack_into`` set (the network takes packed rows), the examples share rows of at most
        that many tokens (``data/packing.pack_padded``). Outputs and targets stay one per
        example, in order, so training, the dev evaluation and ``bertpipe predict`` all batch
        through here and score the same."""
        batch = self.collate(rows, pad_id)
        return pack_padded(batch, pack_into, pad_id) if pack_into and self.packs else batch

    @abstractmethod
    def evaluator(self, spec: TaskSpec, dev: Encoded, hp: FinetuneHParams):
        """The dev-set evaluator (``tasks/evaluators.py``), which also decodes predictions."""

    @abstractmethod
    def read_inputs(self, path: Path, spec: TaskSpec) -> tuple[list[dict], bool]:
        """A prediction file (``tasks/inputs.py``) as rows in the kind's schema, and whether it
        holds gold labels (rows without them get placeholders the metrics never see)."""

    @abstractmethod
    def collector(
        self, spec: TaskSpec, rows: list[dict], encoded: Encoded, hp: FinetuneHParams
    ) -> PredictionCollector:
        """Turns a prediction pass's logits into output records (``bertpipe predict``)."""

    def constant_logits(self, spec: TaskSpec, train: Encoded):
        """The trivial predictor the report shows beside every score (the majority class, the
        mean score, the most frequent tag): a function batch -> logits, or None (QA)."""
        return None

    def truncated(self, tok, ds, encoded: Encoded, hp: FinetuneHParams) -> int:
        """Examples longer than ``max_length`` tokens (cut to it in ``encoded``)."""
        tok = copy.deepcopy(tok)
        tok.no_padding()
        tok.no_truncation()
        texts = (
            ds["text_a"]
            if "text_b" not in ds.column_names
            else list(zip(ds["text_a"], ds["text_b"], strict=True))
        )
        return sum(len(e.ids) > hp.max_length for e in tok.encode_batch(texts))

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
    packs = True  # one output per example, read at its [CLS]: rows may hold several
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

    def read_inputs(self, path: Path, spec: TaskSpec) -> tuple[list[dict], bool]:
        rows, gold = [], True
        for line_no, row in inputs.table_rows(path, spec.columns, spec.file_names):
            where = f"{path}:{line_no}"
            for key in ("text_a", "text_b"):
                if key in row and not isinstance(row[key], str):
                    raise user.TaskDataError(f"{where}: {key} is not text")
            gold = gold and "label" in row and row["label"] not in ("", None)
            rows.append({**row, "label": self._gold(row.get("label"), spec, where) if gold else 0})
        if not gold:
            for r in rows:
                r["label"] = self._placeholder
        return rows, gold

    _placeholder: Any = 0

    def _gold(self, value, spec: TaskSpec, where: str) -> Any:
        labels = list(spec.labels or ())
        if str(value) in labels:
            return labels.index(str(value))
        if str(value).lstrip("-").isdigit() and 0 <= int(value) < len(labels):
            return int(value)
        raise user.TaskDataError(
            f"{where}: label {value!r} is not one of the model's labels {labels} (or their index)"
        )

    def collector(
        self, spec: TaskSpec, rows: list[dict], encoded: Encoded, hp: FinetuneHParams
    ) -> PredictionCollector:
        return _SequenceCollector(spec.labels)

    def constant_logits(self, spec: TaskSpec, train: Encoded):
        if spec.labels is None:  # regression: the training mean
            mean = sum(r["label"] for r in train.rows) / len(train.rows)
            return lambda batch: torch.full((len(batch["labels"]), 1), float(mean))
        counts = torch.bincount(
            torch.tensor([r["label"] for r in train.rows]), minlength=len(spec.labels)
        )
        onehot = torch.nn.functional.one_hot(counts.argmax(), len(spec.labels)).float()
        return lambda batch: onehot.expand(len(batch["labels"]), -1)

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

    _placeholder = 0.0

    def _gold(self, value, spec: TaskSpec, where: str) -> Any:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise user.TaskDataError(f"{where}: score {value!r} is not a number") from None

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

    def read_inputs(self, path: Path, spec: TaskSpec) -> tuple[list[dict], bool]:
        index = {t: i for i, t in enumerate(spec.labels or ())}
        rows = list(inputs.conll_rows(path, *spec.conll_columns))
        gold = bool(rows) and all("tags" in r for _, r in rows)
        out = []
        for line_no, r in rows:
            if not gold:
                out.append({"tokens": r["tokens"], "tags": [0] * len(r["tokens"])})
                continue
            bad = next((t for t in r["tags"] if t not in index), None)
            if bad is not None:
                raise user.TaskDataError(
                    f"{path}:{line_no}: tag {bad!r} is not one of the model's tags {list(index)}"
                )
            out.append({"tokens": r["tokens"], "tags": [index[t] for t in r["tags"]]})
        return out, gold

    def collector(
        self, spec: TaskSpec, rows: list[dict], encoded: Encoded, hp: FinetuneHParams
    ) -> PredictionCollector:
        return _TokenCollector(spec.labels or (), rows)

    def constant_logits(self, spec: TaskSpec, train: Encoded):
        tags = torch.tensor([t for r in train.rows for t in r["tags"] if t != IGNORE_INDEX])
        onehot = torch.nn.functional.one_hot(
            torch.bincount(tags, minlength=len(spec.labels or ())).argmax(), len(spec.labels or ())
        ).float()
        return lambda batch: onehot.expand(*batch["input_ids"].shape, -1)

    def truncated(self, tok, ds, encoded: Encoded, hp: FinetuneHParams) -> int:
        # a word cut off has no first sub-word carrying a tag
        return sum(
            sum(t != IGNORE_INDEX for t in e["tags"]) < len(words)
            for e, words in zip(encoded.rows, ds["tokens"], strict=True)
        )

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

    def read_inputs(self, path: Path, spec: TaskSpec) -> tuple[list[dict], bool]:
        rows = [r for _, r in inputs.qa_rows(path)]
        answered = sum(bool(r["answers"]["text"]) for r in rows)
        # v2.0 files mark unanswerable questions by an empty answer list
        return rows, bool(rows) and (answered == len(rows) or (spec.unanswerable and answered > 0))

    def collector(
        self, spec: TaskSpec, rows: list[dict], encoded: Encoded, hp: FinetuneHParams
    ) -> PredictionCollector:
        return _SpanCollector(spec, encoded, hp)

    def truncated(self, tok, ds, encoded: Encoded, hp: FinetuneHParams) -> int:
        from bertpipe.tasks import squad

        questions = tok.encode_batch(ds["question"], add_special_tokens=False)
        return sum(len(q.ids) > squad.MAX_QUERY_TOKENS for q in questions)

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
