"""User tasks from local files, defined in ``params.yaml`` (``finetune.user_tasks``).

Owns reading csv/tsv/jsonl tables with named columns and CoNLL files (one word
per line, columns separated by whitespace, blank line between sentences), and
the checks that make a bad file fail with its path, line and the fix: a missing
column, a row with the wrong number of fields, a label outside the declared set,
an unparsable score, an empty split. What a row means (a label, a score, tags)
is the task kind's business (``tasks/kinds.py``), which calls these readers.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from bertpipe.config import UserTaskConfig
from bertpipe.errors import UserError

if TYPE_CHECKING:
    from bertpipe.tasks.kinds import FromUserFiles


class TaskDataError(UserError, ValueError):
    """A user task file that cannot be used; the message names the file, the line and the fix."""


def file_format(ucfg: UserTaskConfig, path: Path, kind: FromUserFiles) -> str:
    if ucfg.format != "auto":
        return ucfg.format
    suffix = path.suffix.lower()
    if suffix in {".csv", ".tsv", ".jsonl"}:
        return suffix[1:]
    if kind.user_file_format is not None:
        return kind.user_file_format
    raise TaskDataError(
        f"{path}: cannot tell the format from the extension; set format: csv|tsv|jsonl|conll"
    )


def split_path(name: str, ucfg: UserTaskConfig, split: str) -> Path:
    path = Path(getattr(ucfg, split)).expanduser()
    if not path.is_file():
        raise TaskDataError(f"{path}: no such file (finetune.user_tasks.{name}.{split})")
    return path


def _table_rows(
    path: Path,
    fmt: str,
    *,
    opener=None,
    tsv_quoting: Literal[0, 1, 2, 3] = csv.QUOTE_MINIMAL,
    file_names: tuple[str, ...] | None = None,
    wanted: str | None = None,
) -> Iterator[tuple[int, dict]]:
    """(line number, row) pairs; rows with a wrong field count or bad JSON are errors.

    ``opener`` opens the file as text (default: utf-8, BOM stripped); a csv/tsv whose header
    lacks ``wanted`` but has as many fields as ``file_names`` is read as header-less with
    those names (CoLA's TSVs)."""
    with opener(path) if opener else open(path, encoding="utf-8-sig", newline="") as f:
        if fmt == "jsonl":
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise TaskDataError(
                        f"{path}:{line_no}: not a JSON object ({e.msg}); "
                        "write one JSON object per line"
                    ) from None
                if not isinstance(row, dict):
                    raise TaskDataError(
                        f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}"
                    )
                yield line_no, row
            return
        if fmt == "tsv":
            reader = csv.reader(f, delimiter="\t", quoting=tsv_quoting)
        else:
            reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return
        headerless = wanted is not None and wanted not in header
        if headerless and file_names and len(header) == len(file_names):
            yield 1, dict(zip(file_names, header, strict=True))
            header = list(file_names)
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise TaskDataError(
                    f"{path}:{reader.line_num}: {len(row)} fields, the header has {len(header)} "
                    f"({', '.join(header)}); quote fields that contain the delimiter"
                )
            yield reader.line_num, dict(zip(header, row, strict=True))


def table_examples(
    path: Path, fmt: str, name: str, ucfg: UserTaskConfig
) -> Iterator[tuple[int, dict]]:
    """(line number, ``{text_a, [text_b,] label}``) per row of a csv/tsv/jsonl file."""
    if fmt == "conll":
        raise TaskDataError(
            f"{path}: format conll is for token_classification; use csv, tsv or jsonl"
        )
    wanted = {"text_a": ucfg.text_a, "label": ucfg.label}
    if ucfg.text_b is not None:
        wanted["text_b"] = ucfg.text_b
    checked = False
    for line_no, row in _table_rows(path, fmt):
        if not checked or fmt == "jsonl":
            missing = [
                f"{col!r} (finetune.user_tasks.{name}.{key})"
                for key, col in wanted.items()
                if col not in row
            ]
            if missing:
                where = f"{path}" if fmt != "jsonl" else f"{path}:{line_no}"
                raise TaskDataError(
                    f"{where}: no column {', '.join(missing)}; columns found: "
                    f"{', '.join(map(str, row))}. Set the column names in params.yaml"
                )
            checked = True
        yield line_no, {key: row[col] for key, col in wanted.items()}


def check_texts(row: dict, where: str, ucfg: UserTaskConfig) -> dict:
    """The row, if its text fields hold text (a jsonl number or list is an error)."""
    for key in ("text_a", "text_b"):
        if key in row and not isinstance(row[key], str):
            raise TaskDataError(f"{where}: {key} ({getattr(ucfg, key)!r}) is not text")
    return row


def conll_sentences(
    path: Path, token_column: int, tag_column: int
) -> Iterator[tuple[int, list, list]]:
    """(first line, words, tags) per sentence; every word line must have the same field count."""
    words: list[str] = []
    tags: list[str] = []
    start, width = 0, None
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
                    raise TaskDataError(
                        f"{path}:{line_no}: one field; CoNLL lines are 'word ... tag'"
                    )
            if len(fields) != width:
                raise TaskDataError(
                    f"{path}:{line_no}: {len(fields)} fields, earlier lines have {width}; "
                    "each line is one word and its columns, blank lines end sentences"
                )
            if not words:
                start = line_no
            words.append(fields[token_column])
            tags.append(fields[tag_column])
    if words:
        yield start, words, tags


def _raw(
    name: str, ucfg: UserTaskConfig, split: str, kind: FromUserFiles
) -> Iterator[tuple[Path, int, dict]]:
    path = split_path(name, ucfg, split)
    for line_no, row in kind.user_rows(path, file_format(ucfg, path, kind), name, ucfg):
        yield path, line_no, row


def infer_labels(name: str, ucfg: UserTaskConfig, kind: FromUserFiles) -> tuple[str, ...] | None:
    """The labels (tags) found in the training file: sorted, with ``O`` first for tags;
    None for a kind without labels (regression)."""
    found: set[str] = set()
    rows = 0
    for _, _, row in _raw(name, ucfg, "train", kind):
        found.update(kind.user_labels(row))
        rows += 1
    if not rows:
        raise TaskDataError(f"{ucfg.train}: no examples (finetune.user_tasks.{name}.train)")
    return tuple(sorted(found, key=lambda t: (t != "O", t))) if found else None


def is_bio(labels: tuple[str, ...]) -> bool:
    return all(t == "O" or t[:2] in {"B-", "I-"} for t in labels) and any(t != "O" for t in labels)


def load_split(
    name: str, ucfg: UserTaskConfig, split: str, labels: tuple[str, ...] | None, kind: FromUserFiles
):
    """A ``datasets.Dataset`` in the internal schema (see ``tasks.spec``); bad rows are errors."""
    import datasets

    index = {label: i for i, label in enumerate(labels or ())}
    rows, path = [], Path(getattr(ucfg, split))
    for path, line_no, row in _raw(name, ucfg, split, kind):
        rows.append(kind.user_example(row, index, f"{path}:{line_no}", name, ucfg))
    if not rows:
        raise TaskDataError(
            f"{path}: no examples in the {split} split (finetune.user_tasks.{name}.{split}); "
            "point it at a file with data"
        )
    return datasets.Dataset.from_list(rows)
