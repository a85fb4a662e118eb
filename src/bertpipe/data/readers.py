"""Streaming document readers for corpus sources: local files, the mirror, the hub.

Owns turning a ``SourceConfig`` into an iterator of raw document strings, one at
a time, never holding a whole file. Damaged input (invalid UTF-8, bad JSON lines,
missing fields) is repaired or skipped and counted in the ``problems`` counter
the caller passes in, with a warning naming the file and line; a missing file
or unknown dataset raises with a message that says what to do.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import json
import logging
import lzma
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from bertpipe.config import SourceConfig
from bertpipe.data import catalog
from bertpipe.errors import UserError

log = logging.getLogger(__name__)

_OPENERS: dict[str, Callable[..., Any]] = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}
_WIKITEXT_TITLE = re.compile(r"^ = [^=].* = $")
_MAX_WARNINGS = 5


class SourceError(UserError, RuntimeError):
    """A source that cannot be read at all (missing file, empty glob, unknown format)."""


def _open_binary(path: Path) -> IO[bytes]:
    opener = _OPENERS.get(path.suffix.lower())
    return opener(path, "rb") if opener is not None else open(path, "rb")


def _base_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _OPENERS:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def detect_format(path: Path) -> str:
    ext = _base_suffix(path)
    if ext in {".jsonl", ".json", ".ndjson"}:
        return "jsonl"
    if ext == ".parquet":
        return "parquet"
    return "txt"


def _warn(problems: Counter, kind: str, where: str, detail: str, action: str = "skipped") -> None:
    problems[kind] += 1
    if problems[kind] <= _MAX_WARNINGS:
        log.warning(
            "%s: %s (%s); %s and counted in the corpus statistics", where, kind, detail, action
        )


def _decoded_lines(path: Path, problems: Counter) -> Iterator[tuple[int, str]]:
    """(line number, text) with invalid UTF-8 replaced and counted. A compressed file that
    ends early (a truncated download) gives the lines before the damage; the rest of the
    file is skipped and counted, under its name, in corpus_stats.json."""
    with _open_binary(path) as f:
        lineno = 0
        lines = iter(f)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                return
            except (EOFError, lzma.LZMAError, zlib.error, OSError) as e:
                problems[f"truncated_file:{path}"] += 1
                _warn(
                    problems,
                    "truncated_files",
                    f"{path}:{lineno + 1}",
                    f"{type(e).__name__}: {e}",
                    "the rest of the file skipped",
                )
                return
            lineno += 1
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                _warn(
                    problems, "invalid_utf8_lines", f"{path}:{lineno}", str(e), "bad bytes dropped"
                )
                yield lineno, raw.decode("utf-8", errors="replace")


def _iter_txt(path: Path, separator: str, problems: Counter) -> Iterator[str]:
    if separator == "file":
        text = "".join(line for _, line in _decoded_lines(path, problems))
        if text:
            yield text
        return
    buf: list[str] = []
    for _, line in _decoded_lines(path, problems):
        if separator == "line":
            yield line
        elif separator == "blank_line":
            if line.strip():
                buf.append(line)
            elif buf:
                yield "".join(buf)
                buf = []
        else:  # wikitext: a new document starts at each top-level " = Title = " line
            if _WIKITEXT_TITLE.match(line.rstrip("\r\n")) and buf:
                yield "".join(buf)
                buf = []
            buf.append(line)
    if buf:
        yield "".join(buf)


def _iter_jsonl(path: Path, text_field: str, problems: Counter) -> Iterator[str]:
    for lineno, line in _decoded_lines(path, problems):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            _warn(problems, "bad_json_lines", f"{path}:{lineno}", str(e))
            continue
        text = record.get(text_field) if isinstance(record, dict) else None
        if not isinstance(text, str):
            _warn(
                problems,
                "missing_text_field",
                f"{path}:{lineno}",
                f"no string field {text_field!r}; set text_field in the source",
            )
            continue
        yield text


def _iter_parquet(path: Path, text_field: str, problems: Counter) -> Iterator[str]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if text_field not in pf.schema_arrow.names:
        raise SourceError(
            f"{path}: no column {text_field!r} (columns: {', '.join(pf.schema_arrow.names)}); "
            "set text_field in the source"
        )
    for batch in pf.iter_batches(columns=[text_field], batch_size=256):
        for text in batch.column(0).to_pylist():
            if isinstance(text, str):
                yield text
            else:
                _warn(problems, "missing_text_field", str(path), "null text")


def iter_files(
    files: list[Path], fmt: str, text_field: str, separator: str, problems: Counter
) -> Iterator[str]:
    for path in files:
        file_fmt = detect_format(path) if fmt == "auto" else fmt
        if file_fmt == "jsonl":
            yield from _iter_jsonl(path, text_field, problems)
        elif file_fmt == "parquet":
            yield from _iter_parquet(path, text_field, problems)
        else:
            yield from _iter_txt(path, separator, problems)


def local_files(pattern: str) -> list[Path]:
    path = Path(pattern).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
    elif any(ch in pattern for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    else:
        files = [path] if path.is_file() else []
    if not files:
        raise SourceError(
            f"corpus source path {pattern!r}: no such file (or the glob/directory matched nothing). "
            "Fix 'path' in the corpus.sources entry of params.yaml."
        )
    return files


def iter_source(src: SourceConfig, problems: Counter) -> Iterator[str]:
    """Raw documents of one source, in a stable order, honouring ``max_chars``."""
    docs = _raw_documents(src, problems)
    if src.max_chars is None:
        yield from docs
        return
    left = src.max_chars
    for text in docs:
        if len(text) >= left:
            # Cut the last document at a line boundary so the cap is honoured exactly-ish.
            cut = text.rfind("\n", 0, left)
            yield text[: cut if cut > 0 else left]
            return
        left -= len(text)
        yield text


def _raw_documents(src: SourceConfig, problems: Counter) -> Iterator[str]:
    if src.path is not None:
        yield from iter_files(
            local_files(src.path), src.format, src.text_field, src.doc_separator, problems
        )
        return
    if src.hub is not None:
        ds = catalog.load_hub(
            src.label, src.hub, src.hub_config, src.hub_revision, src.split, streaming=True
        )
        yield from _iter_rows(ds, src.text_field, src.label, problems)
        return
    spec = catalog.get_spec(src.dataset or "")  # the schema guarantees one origin
    root = catalog.mirror_root()
    if root is not None:
        files = catalog.mirror_files(spec, src.split, root)
        yield from iter_files(
            files,
            spec.format if spec.format != "tsv" else "txt",
            spec.text_field,
            spec.doc_separator,
            problems,
        )
        return
    ds = catalog.load_spec_from_hub(spec, src.split, streaming=True, revision=src.hub_revision)
    yield from _iter_rows(ds, spec.text_field, spec.name, problems)


def _iter_rows(ds, text_field: str, label: str, problems: Counter) -> Iterator[str]:
    for i, row in enumerate(ds):
        text = row.get(text_field)
        if isinstance(text, str):
            yield text
        else:
            _warn(problems, "missing_text_field", f"{label} row {i}", f"no {text_field!r}")
