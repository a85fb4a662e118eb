"""User tasks from local files, defined in ``params.yaml`` (``finetune.user_tasks``).

Owns reading csv/tsv/jsonl tables with named columns and CoNLL files (one word
per line, columns separated by whitespace, blank line between sentences), and
the checks that make a bad file fail with its path, line and the fix: a missing
column, a row with the wrong number of fields, a label outside the declared set,
an unparsable score, an empty split.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from bertpipe.config import UserTaskConfig


class TaskDataError(ValueError):
    """A user task file that cannot be used; the message names the file, the line and the fix."""


def _format(ucfg: UserTaskConfig, path: Path) -> str:
    if ucfg.format != "auto":
        return ucfg.format
    suffix = path.suffix.lower()
    if suffix in {".csv", ".tsv", ".jsonl"}:
        return suffix[1:]
    if ucfg.kind == "token_classification":
        return "conll"
    raise TaskDataError(f"{path}: cannot tell the format from the extension; set format: csv|tsv|jsonl|conll")


def _path(name: str, ucfg: UserTaskConfig, split: str) -> Path:
    path = Path(getattr(ucfg, split)).expanduser()
    if not path.is_file():
        raise TaskDataError(f"{path}: no such file (finetune.user_tasks.{name}.{split})")
    return path


def _table_rows(path: Path, fmt: str) -> Iterator[tuple[int, dict]]:
    """(line number, row) pairs; rows with a wrong field count or bad JSON are errors."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        if fmt == "jsonl":
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise TaskDataError(f"{path}:{line_no}: not a JSON object ({e.msg}); "
                                        "write one JSON object per line") from None
                if not isinstance(row, dict):
                    raise TaskDataError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
                yield line_no, row
            return
        reader = csv.reader(f, delimiter="\t" if fmt == "tsv" else ",")
        header = next(reader, None)
        if header is None:
            return
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise TaskDataError(
                    f"{path}:{reader.line_num}: {len(row)} fields, the header has {len(header)} "
                    f"({', '.join(header)}); quote fields that contain the delimiter")
            yield reader.line_num, dict(zip(header, row))


def _conll_sentences(path: Path, token_column: int, tag_column: int) -> Iterator[tuple[int, list, list]]:
    """(first line, words, tags) per sentence; every word line must have the same field count."""
    words, tags, start, width = [], [], 0, None
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if words:
                    yield start, words, tags
                words, tags = [], []
                continue
            if width is None:
                width = len(fields)
                if width < 2:
                    raise TaskDataError(f"{path}:{line_no}: one field; CoNLL lines are 'word ... tag'")
            if len(fields) != width:
                raise TaskDataError(f"{path}:{line_no}: {len(fields)} fields, earlier lines have {width}; "
                                    "each line is one word and its columns, blank lines end sentences")
            if not words:
                start = line_no
            words.append(fields[token_column])
            tags.append(fields[tag_column])
    if words:
        yield start, words, tags


def _raw(name: str, ucfg: UserTaskConfig, split: str) -> Iterator[tuple[Path, int, dict]]:
    path = _path(name, ucfg, split)
    fmt = _format(ucfg, path)
    if ucfg.kind == "token_classification":
        if fmt != "conll":
            raise TaskDataError(f"{path}: token_classification reads CoNLL files (format: conll)")
        for line_no, words, tags in _conll_sentences(path, ucfg.token_column, ucfg.tag_column):
            yield path, line_no, {"tokens": words, "tags": tags}
        return
    if fmt == "conll":
        raise TaskDataError(f"{path}: format conll is for token_classification; use csv, tsv or jsonl")
    wanted = {"text_a": ucfg.text_a, "label": ucfg.label}
    if ucfg.text_b is not None:
        wanted["text_b"] = ucfg.text_b
    checked = False
    for line_no, row in _table_rows(path, fmt):
        if not checked or fmt == "jsonl":
            missing = [f"{col!r} (finetune.user_tasks.{name}.{key})" for key, col in wanted.items()
                       if col not in row]
            if missing:
                where = f"{path}" if fmt != "jsonl" else f"{path}:{line_no}"
                raise TaskDataError(f"{where}: no column {', '.join(missing)}; columns found: "
                                    f"{', '.join(map(str, row))}. Set the column names in params.yaml")
            checked = True
        yield path, line_no, {key: row[col] for key, col in wanted.items()}


def infer_labels(name: str, ucfg: UserTaskConfig) -> tuple[str, ...]:
    """The labels (tags) found in the training file: sorted, with ``O`` first for tags."""
    found: set[str] = set()
    for _, _, row in _raw(name, ucfg, "train"):
        if ucfg.kind == "token_classification":
            found.update(row["tags"])
        else:
            found.add(str(row["label"]))
    if not found:
        raise TaskDataError(f"{ucfg.train}: no examples (finetune.user_tasks.{name}.train)")
    return tuple(sorted(found, key=lambda t: (t != "O", t)))


def is_bio(labels: tuple[str, ...]) -> bool:
    return all(t == "O" or t[:2] in {"B-", "I-"} for t in labels) and any(t != "O" for t in labels)


def metrics_for(ucfg: UserTaskConfig, labels: tuple[str, ...] | None) -> tuple[str, ...]:
    if ucfg.kind == "regression":
        return ("pearson", "spearman")
    if ucfg.kind == "classification":
        return ("acc", "macro_f1")
    entity = ucfg.entity_f1 if ucfg.entity_f1 is not None else is_bio(labels)
    return ("entity_f1", "token_acc") if entity else ("token_acc",)


def load_split(name: str, ucfg: UserTaskConfig, split: str, labels: tuple[str, ...] | None):
    """A ``datasets.Dataset`` in the internal schema (see ``tasks.spec``); bad rows are errors."""
    import datasets

    index = {label: i for i, label in enumerate(labels or ())}
    rows, path = [], Path(getattr(ucfg, split))
    for path, line_no, row in _raw(name, ucfg, split):
        if ucfg.kind == "token_classification":
            bad = next((t for t in row["tags"] if t not in index), None)
            if bad is not None:
                raise TaskDataError(f"{path}:{line_no}: tag {bad!r} is not in the declared set "
                                    f"{list(labels)} (finetune.user_tasks.{name}.labels); add it or fix the line")
            rows.append({"tokens": row["tokens"], "tags": [index[t] for t in row["tags"]]})
            continue
        value = row["label"]
        if ucfg.kind == "regression":
            try:
                row["label"] = float(value)
            except (TypeError, ValueError):
                raise TaskDataError(f"{path}:{line_no}: score {value!r} is not a number "
                                    f"(column {ucfg.label!r})") from None
        else:
            if str(value) not in index:
                raise TaskDataError(f"{path}:{line_no}: label {value!r} is not in the declared set "
                                    f"{list(labels)} (finetune.user_tasks.{name}.labels); add it or fix the line")
            row["label"] = index[str(value)]
        for key in ("text_a", "text_b"):
            if key in row and not isinstance(row[key], str):
                raise TaskDataError(f"{path}:{line_no}: {key} ({getattr(ucfg, key)!r}) is not text")
        rows.append(row)
    if not rows:
        raise TaskDataError(f"{path}: no examples in the {split} split (finetune.user_tasks.{name}.{split}); "
                            "point it at a file with data")
    return datasets.Dataset.from_list(rows)
