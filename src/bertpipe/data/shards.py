"""The corpus shard format, its one writer and its readers.

A corpus split is a folder of ``shard-NNNNN.txt`` files (BERT's
``create_pretraining_data.py`` input format): one sentence per line, a blank line
after each document. The ``corpus`` stage writes it; the tokenizer trains and
measures on it; ``pretrain_data`` builds instances from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

PATTERN = "shard-*.txt"


def shard_files(corpus_dir: str | Path, split: str) -> list[Path]:
    """The shards of one split (``train`` or ``valid``), in order."""
    return sorted((Path(corpus_dir) / split).glob(PATTERN))


class ShardWriter:
    """Writes documents into ``shard-NNNNN.txt`` files of about ``shard_chars`` characters."""

    def __init__(self, folder: Path, shard_chars: int, min_docs: int):
        self.folder, self.shard_chars, self.min_docs = folder, shard_chars, min_docs
        folder.mkdir(parents=True, exist_ok=True)
        self.paths: list[Path] = []
        self._f: TextIO | None = None
        self._chars = self._docs = 0

    def write(self, sentences: list[str]) -> None:
        if self._f is None:
            path = self.folder / f"shard-{len(self.paths):05d}.txt"
            self.paths.append(path)
            self._f = open(path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 - spans calls
            self._chars = self._docs = 0
        block = "\n".join(sentences) + "\n\n"
        self._f.write(block)
        self._chars += len(block)
        self._docs += 1
        if self._chars >= self.shard_chars and self._docs >= self.min_docs:
            self._f.close()
            self._f = None

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
            # A short last shard joins the previous one, so every shard has >= min_docs.
            if self._docs < self.min_docs and len(self.paths) > 1:
                last = self.paths.pop()
                with open(self.paths[-1], "a", encoding="utf-8") as dst:
                    dst.write(last.read_text(encoding="utf-8"))
                last.unlink()


def read_documents(path: Path) -> list[list[str]]:
    """One shard as documents, each a list of sentences."""
    docs, cur = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                cur.append(line)
            elif cur:
                docs.append(cur)
                cur = []
    if cur:
        docs.append(cur)
    return docs


def iter_sentences(files: Iterable[str | Path], limit: int | None = None) -> Iterator[str]:
    """The sentences of shards, in order, document boundaries ignored; at most ``limit``."""
    n = 0
    for path in files:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    yield line
                    n += 1
                    if limit is not None and n >= limit:
                        return
