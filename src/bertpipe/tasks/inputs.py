"""Files to predict on: csv/tsv/jsonl tables, plain text lines, CoNLL, SQuAD json.

Owns reading a prediction input into a task kind's internal schema (``tasks/spec.py``),
with the gold labels when the file has them (for ``bertpipe predict --score``). Which
reader a kind uses and what a row means is the kind's (``tasks/kinds.py``). A file
that cannot be used (missing, empty, a missing column, a label outside the model's
set) is an error naming the file, the line and the fix.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from bertpipe.tasks import user
from bertpipe.tasks.user import TaskDataError

TABLES = {".csv", ".tsv", ".jsonl"}


def suffix(path: Path) -> str:
    """The format suffix, under a ``.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def open_text(path: Path):
    if not path.is_file():
        raise TaskDataError(f"{path}: no such file")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _table(
    path: Path, file_names: tuple[str, ...] | None, wanted: str
) -> Iterator[tuple[int, dict]]:
    """The user-task table reader (``tasks/user.py``), with ``.gz`` and GLUE's unquoted TSVs."""
    return user._table_rows(
        path,
        suffix(path).lstrip("."),
        opener=open_text,
        tsv_quoting=csv.QUOTE_NONE,  # TSVs as GLUE writes them: quotes inside sentences are text
        file_names=file_names,
        wanted=wanted,
    )


def resolve_columns(
    columns: dict[str, tuple[str, ...]], available: list, where: str
) -> dict[str, str | None]:
    """Internal name -> the first accepted column name present; a missing text column is an
    error naming ``where`` and the columns found (``label`` may be absent: no gold)."""
    names = {
        k: next((c for c in accepted if c in available), None) for k, accepted in columns.items()
    }
    missing = [
        " or ".join(repr(c) for c in columns[k])
        for k in ("text_a", "text_b")
        if k in columns and names[k] is None
    ]
    if missing:
        raise TaskDataError(
            f"{where}: no column {', '.join(missing)}; columns found: "
            f"{', '.join(map(str, available))}. Name the text columns as the task does"
        )
    return names


def table_rows(
    path: Path, columns: dict[str, tuple[str, ...]], file_names: tuple[str, ...] | None = None
) -> Iterator[tuple[int, dict]]:
    """(line, ``{text_a[, text_b][, label]}``) per row of a table, or per line of a text file
    (``text_a``; a tab separates ``text_b`` for pairs). ``columns`` maps each internal name to
    the column names accepted; ``label`` is optional (gold for scoring)."""
    if suffix(path) not in TABLES:
        with open_text(path) as f:
            for line_no, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                texts = line.split("\t") if "text_b" in columns else [line]
                if len(texts) != (2 if "text_b" in columns else 1):
                    raise TaskDataError(
                        f"{path}:{line_no}: a sentence pair per line, separated by one tab"
                    )
                yield line_no, dict(zip(("text_a", "text_b"), texts, strict=False))
        return
    names: dict[str, str | None] = {}
    for line_no, row in _table(path, file_names, columns["text_a"][0]):
        if not names or suffix(path) == ".jsonl":
            names = resolve_columns(columns, list(row), f"{path}:{line_no}")
        yield line_no, {k: row[c] for k, c in names.items() if c is not None}


def conll_rows(path: Path, token_column: int, tag_column: int) -> Iterator[tuple[int, dict]]:
    """(first line, ``{tokens[, tags]}``) per sentence: CoNLL (a word per line, blank line
    between sentences; a single column means no gold tags), or, for a ``.txt`` file, a
    sentence per line split on whitespace."""
    plain = suffix(path) == ".txt"
    words: list[str] = []
    tags: list[str] = []
    start, width = 0, None
    with open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if plain:
                if fields:
                    yield line_no, {"tokens": fields}
                continue
            if not fields or fields[0] == "-DOCSTART-":
                if words:
                    yield start, {"tokens": words, **({"tags": tags} if tags else {})}
                words, tags = [], []
                continue
            width = width or len(fields)
            if len(fields) != width:
                raise TaskDataError(
                    f"{path}:{line_no}: {len(fields)} fields, earlier lines have {width}; "
                    "each line is one word and its columns, blank lines end sentences"
                )
            if not words:
                start = line_no
            words.append(fields[token_column])
            if width > 1:
                tags.append(fields[tag_column])
    if words:
        yield start, {"tokens": words, **({"tags": tags} if tags else {})}


def qa_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """SQuAD json (``.json``, ``.json.gz``: its questions, with answers when present) or jsonl
    with ``question`` and ``context`` (and optional ``id``, ``answers``)."""
    from bertpipe.tasks import squad

    if suffix(path) == ".json":
        if not path.is_file():
            raise TaskDataError(f"{path}: no such file")
        try:
            rows = squad.flatten(path)
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            raise TaskDataError(
                f"{path}: not SQuAD json ({type(e).__name__}: {e}); expected "
                '{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}'
            ) from None
        yield from enumerate(rows, 1)
        return
    for line_no, row in _table(path, None, "question"):
        missing = [k for k in ("question", "context") if k not in row]
        if missing:
            raise TaskDataError(f"{path}:{line_no}: no {', '.join(missing)} field")
        answers = row.get("answers") or {"text": [], "answer_start": []}
        yield (
            line_no,
            {
                "id": str(row.get("id", line_no)),
                "title": str(row.get("title", "")),
                "context": row["context"],
                "question": row["question"],
                "answers": answers,
            },
        )
