"""The dataset catalog: mirror resolution, clear failures, the hub path on local files."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from bertpipe.config import SourceConfig
from bertpipe.data import catalog
from bertpipe.data.readers import iter_source


def test_catalog_covers_corpora_glue_and_squad():
    names = set(catalog.CATALOG)
    assert {"wikipedia", "books", "gutenberg", "wikitext-103"} <= names
    assert {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"} <= names
    assert {"squad", "squad_v2"} <= names
    for spec in catalog.CATALOG.values():
        assert spec.mirror, spec.name
        if spec.hub_id:
            assert set(spec.hub_splits) <= set(spec.mirror) | {"test"}, spec.name


@pytest.mark.parametrize(
    "name,split,count",
    [
        ("cola", "train", 1),
        ("sst2", "dev", 1),
        ("mnli", "dev_matched", 1),
        ("qnli", "dev", 1),
        ("squad", "dev", 1),
        ("squad_v2", "dev", 1),
        ("wikipedia", "train", 4),
        ("gutenberg", "train", 4),
    ],
)
def test_mirror_files_resolve(mirror, name, split, count):
    files = catalog.mirror_files(catalog.get_spec(name), split, mirror)
    assert len(files) == count and all(f.is_file() for f in files)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(catalog.DatasetUnavailable, match=r"unknown dataset 'wikipeda'.*wikipedia"):
        list(iter_source(SourceConfig(dataset="wikipeda"), Counter()))


def test_dataset_missing_from_mirror_fails_at_once_naming_it(mirror):
    start = time.monotonic()
    with pytest.raises(catalog.DatasetUnavailable) as e:
        list(iter_source(SourceConfig(dataset="wikitext-103"), Counter()))
    assert time.monotonic() - start < 5
    msg = str(e.value)
    assert "'wikitext-103'" in msg and "not in the mirror" in msg
    assert (
        "wiki.train.raw" in msg and "Salesforce/wikitext" in msg and "BERTPIPE_DATA_MIRROR" in msg
    )


def test_mirror_only_dataset_without_mirror_says_so(monkeypatch):
    monkeypatch.delenv("BERTPIPE_DATA_MIRROR", raising=False)
    with pytest.raises(catalog.DatasetUnavailable, match="exists only in a mirror"):
        list(iter_source(SourceConfig(dataset="us_speeches"), Counter()))


def test_unreachable_hub_fails_within_seconds(monkeypatch):
    monkeypatch.delenv("BERTPIPE_DATA_MIRROR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    start = time.monotonic()
    with pytest.raises(catalog.DatasetUnavailable) as e:
        list(iter_source(SourceConfig(dataset="wikipedia"), Counter()))
    assert time.monotonic() - start < 10
    assert "'wikipedia'" in str(e.value) and "unreachable" in str(e.value)


def test_offline_hub_without_cache_fails_fast_with_our_message(monkeypatch):
    monkeypatch.delenv("BERTPIPE_DATA_MIRROR", raising=False)
    start = time.monotonic()
    with pytest.raises(catalog.DatasetUnavailable, match="'gutenberg'.*could not be loaded"):
        list(iter_source(SourceConfig(dataset="gutenberg"), Counter()))
    assert time.monotonic() - start < 10


def test_hub_code_path_reads_a_local_dataset_repository(tmp_path, monkeypatch):
    """The real ``datasets.load_dataset`` path, pointed at a local folder laid out like a hub repo."""
    monkeypatch.delenv("BERTPIPE_DATA_MIRROR", raising=False)
    repo = tmp_path / "my-corpus"
    (repo / "data").mkdir(parents=True)
    with open(repo / "data" / "train-00000.jsonl", "w") as f:
        for i in range(5):
            f.write(json.dumps({"content": f"Document {i}. It has two sentences."}) + "\n")
    src = SourceConfig(hub=str(repo), text_field="content", split="train")
    docs = list(iter_source(src, Counter()))
    assert docs == [f"Document {i}. It has two sentences." for i in range(5)]
