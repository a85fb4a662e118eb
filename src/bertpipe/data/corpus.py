"""Corpus building: read sources, clean, split sentences, dedupe, hold out, write shards.

Owns the text that pretraining sees: ``<out>/train`` and ``<out>/valid`` in the
shard format of ``data/shards.py`` (held-out documents in ``valid``).

Streaming: documents flow one at a time from the readers through a bounded pool
of cleaning workers into shard files, so peak memory does not grow with the
corpus (only a 16-byte hash per kept document is remembered, for dedup).

Cleaning: Project Gutenberg header/footer (outside the ``*** START OF`` /
``*** END OF`` lines), Unicode NFC, markup remnants (HTML tags and entities,
``[[wiki|links]]``, ``{{templates}}``, ``_italics_``), control characters;
paragraphs are blank-line separated blocks whose hard-wrapped lines are joined;
sentences come from blingfire (a finite-state splitter, no model download).
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bertpipe.atomic import atomic_dir
from bertpipe.config import CorpusConfig
from bertpipe.data.parallel import ordered_map
from bertpipe.data.readers import iter_source
from bertpipe.data.shards import ShardWriter
from bertpipe.errors import InputError

log = logging.getLogger(__name__)

_PG_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
_PG_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
# C0/C1 controls except \t \n \r, DEL, and U+FFFD (what invalid UTF-8 became).
_GARBAGE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")
_TAG = re.compile(r"</?[A-Za-z][^<>\n]{0,200}>")
_WIKILINK = re.compile(r"\[\[(?:[^\[\]|]*\|)?([^\[\]]*)\]\]")
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_WIKI_EMPH = re.compile(r"'{2,}")
_UNDERSCORE_EMPH = re.compile(r"(?<![\w_])_([^_\n]+)_(?![\w_])")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SPACES = re.compile(r"\s+")


@dataclass
class Cleaned:
    """Result of cleaning one document: its sentences, or why it was dropped."""

    sentences: list[str] = field(default_factory=list)
    dropped: str | None = None
    long_sentences: int = 0
    pg_stripped: bool = False


def strip_gutenberg(text: str) -> tuple[str, bool]:
    """Keep what lies between the START and END marker lines, when both are present."""
    start = _PG_START.search(text)
    if start is None:
        return text, False
    end = _PG_END.search(text, start.end())
    return text[start.end() : end.start() if end else len(text)], True


def clean_markup(text: str) -> str:
    text = html.unescape(text)
    text = _TAG.sub("", text)
    text = _WIKILINK.sub(r"\1", text)
    text = _TEMPLATE.sub("", text)
    text = _WIKI_EMPH.sub("", text)
    return _UNDERSCORE_EMPH.sub(r"\1", text)


def split_sentences(paragraph: str) -> list[str]:
    import blingfire  # imported here: workers load it, the CLI's --help does not

    return [s for s in blingfire.text_to_sentences(paragraph).split("\n") if s.strip()]


def clean_document(text: str, cfg: CorpusConfig) -> Cleaned:
    """Clean and sentence-split one raw document (pure function; runs in workers)."""
    text, pg = strip_gutenberg(text)
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    if not text.strip():
        return Cleaned(dropped="empty", pg_stripped=pg)
    text, garbage = _GARBAGE.subn("", text)
    if garbage > cfg.max_garbage_fraction * (len(text) + garbage):
        return Cleaned(dropped="binary", pg_stripped=pg)
    if cfg.strip_markup:
        text = clean_markup(text)
    out = Cleaned(pg_stripped=pg)
    for para in _PARAGRAPH_BREAK.split(text):
        para = _SPACES.sub(" ", para).strip()
        if not para:
            continue
        for sent in split_sentences(para):
            sent = sent.strip()
            if len(sent) > cfg.max_sentence_chars:
                out.long_sentences += 1
            elif sent:
                out.sentences.append(sent)
    words = sum(len(s.split()) for s in out.sentences)
    if words == 0:
        out.dropped, out.sentences = "empty", []
    elif words < cfg.min_doc_words:
        out.dropped, out.sentences = "too_short", []
    return out


# Workers receive the config once, not with every batch.
_WORKER_CFG: CorpusConfig | None = None


def _init_worker(cfg: CorpusConfig) -> None:
    global _WORKER_CFG
    _WORKER_CFG = cfg


def _clean_batch(batch: tuple[int, list[str]]) -> tuple[int, list[Cleaned]]:
    source_idx, texts = batch
    cfg = _WORKER_CFG
    assert cfg is not None, "_init_worker runs first"
    return source_idx, [clean_document(t, cfg) for t in texts]


class HoldOut:
    """Whole documents go to validation while that keeps it within ``fraction`` of the characters.

    Deterministic and streaming; bounded by characters rather than documents so one
    long book cannot become the whole validation set of a small corpus.
    """

    def __init__(self, fraction: float):
        self.fraction = fraction
        self.seen = self.valid = 0

    def __call__(self, chars: int) -> bool:
        self.seen += chars
        if self.valid + chars <= self.fraction * self.seen:
            self.valid += chars
            return True
        return False


def _batches(docs, source_idx: int, max_chars: int = 1_000_000, max_docs: int = 256):
    batch, size = [], 0
    for text in docs:
        batch.append(text)
        size += len(text)
        if size >= max_chars or len(batch) >= max_docs:
            yield source_idx, batch
            batch, size = [], 0
    if batch:
        yield source_idx, batch


def build_corpus(cfg: CorpusConfig, out_dir: str | Path) -> dict:
    """Run the whole stage; returns the stats dict (also what corpus_stats.json holds)."""
    out_dir = Path(out_dir)
    problems: list[Counter[str]] = [Counter() for _ in cfg.sources]
    stats = [
        {
            "documents_read": 0,
            "documents": 0,
            "sentences": 0,
            "words": 0,
            "characters": 0,
            "train_documents": 0,
            "valid_documents": 0,
            "train_characters": 0,
            "valid_characters": 0,
            "dropped": Counter(),
            "long_sentences_dropped": 0,
            "gutenberg_headers_stripped": 0,
        }
        for _ in cfg.sources
    ]
    seen: set[bytes] = set()
    holdouts = [HoldOut(cfg.valid_fraction) for _ in cfg.sources]

    def work():
        for i, src in enumerate(cfg.sources):
            log.info("corpus: reading source %s", src.label)
            yield from _batches(iter_source(src, problems[i]), i)

    with atomic_dir(out_dir) as tmp:
        writers = {
            "train": ShardWriter(tmp / "train", cfg.shard_chars, cfg.min_docs_per_shard),
            "valid": ShardWriter(tmp / "valid", cfg.shard_chars, cfg.min_docs_per_shard),
        }
        for source_idx, cleaned in ordered_map(
            _clean_batch, work(), cfg.num_workers, _init_worker, (cfg,)
        ):
            st = stats[source_idx]
            for doc in cleaned:
                st["documents_read"] += 1
                st["long_sentences_dropped"] += doc.long_sentences
                st["gutenberg_headers_stripped"] += doc.pg_stripped
                if doc.dropped:
                    st["dropped"][doc.dropped] += 1
                    continue
                digest = hashlib.blake2b("\n".join(doc.sentences).encode(), digest_size=16).digest()
                if digest in seen:
                    st["dropped"]["duplicate"] += 1
                    continue
                seen.add(digest)
                chars = sum(len(s) for s in doc.sentences)
                split = "valid" if holdouts[source_idx](chars) else "train"
                writers[split].write(doc.sentences)
                st["documents"] += 1
                st[f"{split}_documents"] += 1
                st[f"{split}_characters"] += chars
                st["sentences"] += len(doc.sentences)
                st["words"] += sum(len(s.split()) for s in doc.sentences)
                st["characters"] += chars
        for w in writers.values():
            w.close()
        if not writers["train"].paths:
            raise InputError(
                "corpus: no training documents survived cleaning; check corpus.sources and "
                "min_doc_words in params.yaml (see the dropped counts logged above)"
            )
        result = _summarise(cfg, stats, problems, writers)
    return result


def _summarise(cfg: CorpusConfig, stats, problems, writers) -> dict:
    per_source = {}
    for src, st, pr in zip(cfg.sources, stats, problems):
        st["dropped"] = dict(sorted((st["dropped"] + pr).items()))
        key = src.label
        n = 2
        while key in per_source:  # the same dataset listed twice keeps both entries
            key, n = f"{src.label}#{n}", n + 1
        per_source[key] = st
    total: dict = {"dropped": Counter()}
    for st in per_source.values():
        for k, v in st.items():
            if k == "dropped":
                total["dropped"].update(v)
            else:
                total[k] = total.get(k, 0) + v
    total["dropped"] = dict(sorted(total["dropped"].items()))
    return {
        "sources": per_source,
        "total": total,
        "shards": {split: len(w.paths) for split, w in writers.items()},
    }
