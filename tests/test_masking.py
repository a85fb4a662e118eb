"""Masking statistics and rules, pinned on real text."""

from __future__ import annotations

import numpy as np
import pytest

from bertpipe.config import MaskingConfig
from bertpipe.data.masking import Masker
from bertpipe.labels import IGNORE_INDEX


@pytest.fixture(scope="module")
def batch(tiny_built):
    from bertpipe.data.pretrain_format import PretrainArrays

    arrays = PretrainArrays(tiny_built["root"] / "pretrain", "train")
    n, T = 4000, arrays.meta["config"]["max_seq_length"]
    ids = np.zeros((n, T), dtype=np.int64)  # [PAD] = 0
    for i in range(n):
        x = arrays[i]["input_ids"]
        ids[i, : len(x)] = x
    return ids


def stats(masker, ids, corrupted, labels):
    eligible = ~masker.not_eligible[ids]
    chosen = labels != IGNORE_INDEX
    c, o = corrupted[chosen], ids[chosen]
    return {
        "rate": chosen.sum() / eligible.sum(),
        "mask": (c == masker.mask_id).mean(),
        "random": ((c != masker.mask_id) & (c != o)).mean(),
        "same": (c == o).mean(),
        "special_chosen": int((chosen & ~eligible).sum()),
        "labels_ok": bool((labels[chosen] == ids[chosen]).all()),
    }


def test_15_percent_and_80_10_10(tiny_built, batch):
    masker = Masker.from_vocab(
        tiny_built["tokenizer"].get_vocab(), MaskingConfig(max_predictions_per_seq=64)
    )
    corrupted, labels = masker(batch, np.random.default_rng(0))
    s = stats(masker, batch, corrupted, labels)
    assert abs(s["rate"] - 0.15) <= 0.005
    assert abs(s["mask"] - 0.80) <= 0.01
    # A random replacement can draw the original token (1 in ~2000): it then counts as "same".
    assert abs(s["random"] - 0.10) <= 0.01 and abs(s["same"] - 0.10) <= 0.01
    assert s["special_chosen"] == 0 and s["labels_ok"]
    # Special tokens are never changed either.
    special = masker.not_eligible[batch]
    assert (corrupted[special] == batch[special]).all()


def test_max_predictions_per_seq_caps_each_row(tiny_built, batch):
    masker = Masker.from_vocab(
        tiny_built["tokenizer"].get_vocab(), MaskingConfig(max_predictions_per_seq=3)
    )
    _, labels = masker(batch, np.random.default_rng(1))
    per_row = (labels != IGNORE_INDEX).sum(axis=1)
    assert per_row.max() == 3 and per_row.min() >= 1


def test_whole_word_masking_takes_whole_words(tiny_built, batch):
    vocab = tiny_built["tokenizer"].get_vocab()
    masker = Masker.from_vocab(vocab, MaskingConfig(whole_word=True, max_predictions_per_seq=64))
    _, labels = masker(batch, np.random.default_rng(2))
    chosen = labels != IGNORE_INDEX
    cont = masker.continuation[batch] & ~masker.not_eligible[batch]
    # A chosen ## piece has its predecessor chosen; an unchosen word start leaves its pieces alone.
    prev_chosen = np.zeros_like(chosen)
    prev_chosen[:, 1:] = chosen[:, :-1]
    assert (chosen & cont <= prev_chosen).all()
    nxt_cont = np.zeros_like(cont)
    nxt_cont[:, :-1] = cont[:, 1:]
    nxt_chosen = np.zeros_like(chosen)
    nxt_chosen[:, :-1] = chosen[:, 1:]
    assert (chosen & nxt_cont <= nxt_chosen).all()
    rate = chosen.sum() / (~masker.not_eligible[batch]).sum()
    assert 0.12 < rate <= 0.15  # whole words rarely fill the budget exactly


def test_same_generator_state_same_masks(tiny_built, batch):
    masker = Masker.from_vocab(tiny_built["tokenizer"].get_vocab(), MaskingConfig())
    a = masker(batch[:64], np.random.default_rng(7))
    b = masker(batch[:64], np.random.default_rng(7))
    c = masker(batch[:64], np.random.default_rng(8))
    assert all((x == y).all() for x, y in zip(a, b))
    assert not (a[1] == c[1]).all()


def test_random_replacements_are_never_special(tiny_built, batch):
    masker = Masker.from_vocab(
        tiny_built["tokenizer"].get_vocab(),
        MaskingConfig(mask_token_prob=0.0, random_token_prob=1.0, max_predictions_per_seq=64),
    )
    corrupted, labels = masker(batch, np.random.default_rng(3))
    assert not masker.not_eligible[corrupted[labels != IGNORE_INDEX]].any()
