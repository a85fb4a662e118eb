"""Stage corpus: cleaning, sentence splitting, dedup, hold-out, shards, stats, bad input."""

from __future__ import annotations

import json
import lzma
import os
import tracemalloc

import pytest

from bertpipe.config import CorpusConfig, SourceConfig
from bertpipe.data.corpus import build_corpus, clean_document, strip_gutenberg
from bertpipe.data.readers import SourceError


def cfg(*sources, **kw) -> CorpusConfig:
    kw.setdefault("num_workers", 1)
    kw.setdefault("min_doc_words", 3)
    kw.setdefault("valid_fraction", 0.0)
    return CorpusConfig(sources=tuple(sources), **kw)


def read_docs(folder):
    docs = []
    for shard in sorted(folder.glob("shard-*.txt")):
        docs += [d.split("\n") for d in shard.read_text().split("\n\n") if d.strip()]
    return docs


def test_gutenberg_header_and_footer_are_stripped():
    text = (
        "The Project Gutenberg eBook of X\nlicence blah\n"
        "*** START OF THE PROJECT GUTENBERG EBOOK X ***\nCall me Ishmael. Some years ago.\n"
        "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nMore licence.\n"
    )
    body, stripped = strip_gutenberg(text)
    assert stripped and body.strip() == "Call me Ishmael. Some years ago."
    assert strip_gutenberg("no markers here")[1] is False


def test_cleaning_exact_sentences():
    raw = (
        "Caf\u0065\u0301 society met <b>daily</b> at the [[Paris|capital]]{{citation needed}}. "
        "It was &quot;grand&quot;.\r\n\r\nA new para\ngraph wraps\x07 here.  Then Mr. Smith agreed."
    )
    out = clean_document(raw, CorpusConfig(min_doc_words=1))
    assert out.sentences == [
        "Caf\u00e9 society met daily at the capital.",  # NFC: e + combining acute -> é
        'It was "grand".',
        "A new para graph wraps here.",
        "Then Mr. Smith agreed.",
    ]


def test_reference_sentences_of_a_real_document(mirror):
    with lzma.open(mirror / "corpus/wikipedia/wiki_part_00.jsonl.xz", "rt") as f:
        doc = json.loads(f.readline())["text"]
    sents = clean_document(doc, CorpusConfig()).sentences
    assert sents[:3] == [
        "Anarchism",
        "Anarchism is a political philosophy that advocates stateless societies often defined as "
        "self-governed voluntary institutions, but that several authors have defined as more "
        "specific institutions based on non-hierarchical free associations.",
        "Anarchism holds the state to be undesirable, unnecessary, or harmful.",
    ]


def test_layout_dedup_holdout_and_stats(tmp_path):
    body = "\n\n".join(
        [f"Document number {i} talks about topic {i}. It has a second sentence." for i in range(40)]
        + ["Document number 3 talks about topic 3. It has a second sentence."] * 2  # duplicates
        + ["", "Too short."]
    )
    (tmp_path / "in.txt").write_text(body)
    stats = build_corpus(
        cfg(
            SourceConfig(path=str(tmp_path / "in.txt")),
            valid_fraction=0.1,
            min_doc_words=4,
            min_docs_per_shard=2,
            shard_chars=1000,
        ),
        tmp_path / "out",
    )
    st = stats["sources"][str(tmp_path / "in.txt")]
    assert st["documents"] == 40 and st["dropped"] == {"duplicate": 2, "too_short": 1}
    train, valid = read_docs(tmp_path / "out/train"), read_docs(tmp_path / "out/valid")
    assert len(train) + len(valid) == 40
    assert st["valid_characters"] <= 0.1 * st["characters"] and len(valid) >= 3
    assert train[0] == ["Document number 0 talks about topic 0.", "It has a second sentence."]
    assert stats["shards"]["train"] > 1
    assert st["sentences"] == 80 and st["words"] == 40 * 12


def test_per_source_cap(mirror, tmp_path):
    stats = build_corpus(cfg(SourceConfig(dataset="wikipedia", max_chars=200_000)), tmp_path / "o")
    assert stats["sources"]["wikipedia"]["characters"] <= 200_000


def test_invalid_utf8_is_replaced_and_counted(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(
        b"A fine first document with enough words.\n\n"
        b"Second doc has a bad byte \xff\xfe right here but is mostly fine text.\n"
    )
    stats = build_corpus(cfg(SourceConfig(path=str(p))), tmp_path / "out")
    st = stats["sources"][str(p)]
    assert st["dropped"]["invalid_utf8_lines"] == 1
    assert st["documents"] == 2
    text = (tmp_path / "out/train/shard-00000.txt").read_text()
    assert "\ufffd" not in text and "right here" in text


def test_binary_garbage_is_dropped_and_counted(tmp_path):
    p = tmp_path / "garbage.bin.txt"
    p.write_bytes(b"Real words make a real document here.\n\n" + os.urandom(20_000) + b"\n")
    stats = build_corpus(
        cfg(
            SourceConfig(path=str(p), doc_separator="file"), SourceConfig(path=str(p), name="again")
        ),
        tmp_path / "out",
    )
    st = stats["sources"][str(p)]
    assert st["dropped"]["binary"] == 1 and st["documents"] == 0


def test_a_single_5mb_line(tmp_path):
    p = tmp_path / "long.txt"
    words = ("lorem ipsum dolor sit amet " * 200_000).encode()  # 5.4 MB, no sentence end
    p.write_bytes(b"A normal document that is long enough to keep.\n\n" + words + b"\n")
    stats = build_corpus(cfg(SourceConfig(path=str(p))), tmp_path / "out")
    st = stats["sources"][str(p)]
    assert st["documents"] == 1 and st["long_sentences_dropped"] >= 1
    assert st["dropped"] == {"empty": 1}
    assert (
        max(len(line) for line in (tmp_path / "out/train/shard-00000.txt").read_text().splitlines())
        < 2000
    )


def test_empty_documents_and_bad_json_lines(tmp_path):
    p = tmp_path / "docs.jsonl"
    p.write_text(
        '{"text": "A perfectly normal document with words."}\n'
        '{"text": ""}\n{"text": "   \\n\\n  "}\n{not json\n{"body": "no text field"}\n'
    )
    stats = build_corpus(cfg(SourceConfig(path=str(p))), tmp_path / "out")
    st = stats["sources"][str(p)]
    assert st["documents"] == 1
    assert st["dropped"] == {"bad_json_lines": 1, "empty": 2, "missing_text_field": 1}


def test_missing_file_is_a_clear_error_and_keeps_previous_output(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("One document with a few words in it.\n")
    build_corpus(cfg(SourceConfig(path=str(good))), tmp_path / "out")
    before = (tmp_path / "out/train/shard-00000.txt").read_bytes()
    with pytest.raises(SourceError, match=r"missing\.txt.*no such file.*corpus.sources"):
        build_corpus(
            cfg(SourceConfig(path=str(good)), SourceConfig(path=str(tmp_path / "missing.txt"))),
            tmp_path / "out",
        )
    assert (tmp_path / "out/train/shard-00000.txt").read_bytes() == before
    assert not list(tmp_path.glob(".out.partial"))


def test_glob_and_parquet_sources(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for i in range(3):
        (tmp_path / f"part{i}.txt").write_text(f"Text file {i} has one short document.\n")
    pq.write_table(
        pa.table({"body": ["A parquet document with words.", "Another parquet one here."]}),
        tmp_path / "x.parquet",
    )
    stats = build_corpus(
        cfg(
            SourceConfig(path=str(tmp_path / "part*.txt")),
            SourceConfig(path=str(tmp_path / "x.parquet"), text_field="body"),
        ),
        tmp_path / "out",
    )
    assert [s["documents"] for s in stats["sources"].values()] == [3, 2]


def test_parallel_output_equals_in_process(tmp_path, mirror):
    src = SourceConfig(dataset="us_speeches", max_chars=300_000)
    build_corpus(cfg(src, num_workers=1, valid_fraction=0.05), tmp_path / "a")
    build_corpus(cfg(src, num_workers=2, valid_fraction=0.05), tmp_path / "b")
    for split in ("train", "valid"):
        a = sorted((tmp_path / "a" / split).iterdir())
        b = sorted((tmp_path / "b" / split).iterdir())
        assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_streaming_memory_does_not_grow_with_corpus(tmp_path):
    para = "This sentence is about streaming corpora. " * 20

    def make(n):
        p = tmp_path / f"c{n}.txt"
        with open(p, "w") as f:
            for i in range(n):
                f.write(f"Doc {i}. {para}\n\n")
        return p

    peaks = []
    for n in (2000, 8000):  # ~1.7 MB and ~7 MB of text
        p = make(n)
        tracemalloc.start()
        build_corpus(cfg(SourceConfig(path=str(p)), shard_chars=100_000), tmp_path / f"o{n}")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # 4x the input; the peak may grow by the dedup hashes only (~100 bytes a document).
    assert peaks[1] < peaks[0] * 1.3 + 6000 * 200, peaks
