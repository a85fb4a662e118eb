"""Stage pretrain_data: BERT-style NSP instances, packing, static masks, byte-identical output."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest

from bertpipe.config import PretrainDataConfig
from bertpipe.data.instances import build_pretrain_data, nsp_instances
from bertpipe.data.pretrain_format import PretrainArrays


def digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_nsp_random_next_is_half_and_shapes_hold(tiny_built, tiny_params):
    arrays = PretrainArrays(tiny_built["root"] / "pretrain", "train")
    cls_id, sep_id = 2, 3
    T = tiny_params.pretrain_data.max_seq_length
    assert len(arrays) > 5000
    assert abs(arrays.nsp_labels.mean() - 0.5) <= 0.02
    for i in range(0, len(arrays), 7):
        x = arrays[i]
        ids, b = x["input_ids"], x["type_boundary"]
        assert len(ids) <= T
        assert ids[0] == cls_id and ids[b - 1] == sep_id and ids[-1] == sep_id
        assert (ids == sep_id).sum() == 2 and (ids == cls_id).sum() == 1
        assert 2 <= b < len(ids) - 1  # both segments non-empty


def synthetic_docs(n_docs: int, seed: int = 0):
    """Document d's tokens count up from d * 100_000, so a token says where it came from."""
    gen = np.random.default_rng(seed)
    docs = []
    for d in range(n_docs):
        lengths = gen.integers(3, 40, gen.integers(1, 30))
        ids = d * 100_000 + np.arange(lengths.sum())
        docs.append(np.split(ids, np.cumsum(lengths)[:-1]))
    return docs


def test_nsp_over_many_instances_is_50_percent():
    instances = list(nsp_instances(synthetic_docs(4000), 128, 0.1, random.Random(0)))
    assert len(instances) > 15000
    assert abs(np.mean([r for _, _, r in instances]) - 0.5) <= 0.02


def test_actual_next_continues_a_and_random_next_comes_from_elsewhere():
    checked = {True: 0, False: 0}
    for a, b, is_random in nsp_instances(synthetic_docs(300), 128, 0.1, random.Random(1)):
        assert len(a) >= 1 and len(b) >= 1 and len(a) + len(b) <= 125
        assert (np.diff(a) == 1).all()  # A is contiguous text of one document
        same_doc = a[0] // 100_000 == b[0] // 100_000
        if is_random:
            assert not same_doc
        else:
            assert same_doc and b[0] > a[-1]
            if len(a) + len(b) < 125:  # nothing truncated: B starts right after A
                assert b[0] == a[-1] + 1
        checked[is_random] += 1
    assert min(checked.values()) > 500


def test_same_seed_same_bytes_whatever_the_workers(tiny_built, tiny_params, tmp_path):
    root = tiny_built["root"]
    one = tiny_params.pretrain_data.model_copy(update={"num_workers": 1})
    build_pretrain_data(one, root / "corpus", root / "tokenizer", tmp_path / "a")
    assert digest(tmp_path / "a") == digest(root / "pretrain")  # built with 2 workers
    other = tiny_params.pretrain_data.model_copy(update={"seed": 99})
    build_pretrain_data(other, root / "corpus", root / "tokenizer", tmp_path / "b")
    assert (
        digest(tmp_path / "b")["train/input_ids.npy"]
        != digest(tmp_path / "a")["train/input_ids.npy"]
    )


def test_static_masking_with_dupe_factor(tiny_built, tmp_path):
    root = tiny_built["root"]
    cfg = PretrainDataConfig(max_seq_length=64, masking_mode="static", dupe_factor=2, num_workers=1)
    stats = build_pretrain_data(cfg, root / "corpus", root / "tokenizer", tmp_path / "s")
    dyn = PretrainArrays(root / "pretrain", "train")
    st = PretrainArrays(tmp_path / "s", "train")
    assert st.mlm_labels is not None and dyn.mlm_labels is None
    assert abs(len(st) - 2 * len(dyn)) < 0.05 * len(dyn)  # two copies, different instances
    labels = np.asarray(st.mlm_labels)
    ids = np.asarray(st.input_ids)
    chosen = labels != -100
    assert (ids[chosen] == 4).mean() == pytest.approx(0.8, abs=0.02)
    assert not np.isin(labels[chosen], [0, 2, 3, 4]).any()
    assert stats["train"]["instances"] == len(st)


def test_mlm_only_packing(tiny_built, tmp_path):
    root = tiny_built["root"]
    cfg = PretrainDataConfig(max_seq_length=64, nsp=False, short_seq_prob=0.0, num_workers=1)
    stats = build_pretrain_data(cfg, root / "corpus", root / "tokenizer", tmp_path / "m")
    arrays = PretrainArrays(tmp_path / "m", "train")
    lengths = np.diff(arrays.offsets)
    assert (lengths[:-1] == 64).mean() > 0.95  # packed full, except shard tails
    assert (arrays.nsp_labels == -1).all()
    assert (arrays.type_boundary == lengths).all()  # one segment
    assert stats["train"]["padding_fraction"] < 0.02


def test_missing_corpus_is_a_clear_error(tiny_built, tmp_path):
    (tmp_path / "corpus/train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no corpus shards; run the corpus stage"):
        build_pretrain_data(
            PretrainDataConfig(num_workers=1),
            tmp_path / "corpus",
            tiny_built["root"] / "tokenizer",
            tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()
