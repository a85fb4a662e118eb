"""GLUE and SQuAD splits load from the mirror with the official row counts and label balance."""

from __future__ import annotations

from collections import Counter

import pytest

from bertpipe.data import catalog
from bertpipe.tasks import glue, squad

pytestmark = pytest.mark.mirror


@pytest.mark.parametrize(
    "task,split,rows,labels",
    [
        ("cola", "train", 8551, {1: 6023, 0: 2528}),
        ("cola", "dev", 1043, {1: 721, 0: 322}),
        ("sst2", "train", 67349, {1: 37569, 0: 29780}),
        ("mrpc", "train", 3668, {1: 2474, 0: 1194}),
        ("mrpc", "dev", 408, {1: 279, 0: 129}),
        ("qnli", "dev", 5463, {0: 2702, 1: 2761}),
        ("rte", "train", 2490, {0: 1249, 1: 1241}),
        ("wnli", "dev", 71, {1: 31, 0: 40}),
        ("mnli", "dev_matched", 9815, {0: 3479, 1: 3123, 2: 3213}),
        ("mnli", "dev_mismatched", 9832, {0: 3463, 1: 3129, 2: 3240}),
    ],
)
def test_glue_counts_and_labels(task, split, rows, labels):
    ds = glue.load_split(task, split)
    assert len(ds) == rows
    assert Counter(ds["label"]) == labels
    t = glue.get_task(task)
    assert t.text_a in ds.column_names and (t.text_b is None or t.text_b in ds.column_names)


def test_stsb_is_regression_and_mrpc_text_is_clean():
    ds = glue.load_split("stsb", "dev")
    assert len(ds) == 1500 and isinstance(ds[0]["label"], float)
    assert min(ds["label"]) >= 0.0 and max(ds["label"]) <= 5.0
    mrpc = glue.load_split("mrpc", "dev")
    assert mrpc[0]["sentence1"].startswith("He said the foodservice pie business")


def test_missing_glue_split_is_reported():
    with pytest.raises(
        catalog.DatasetUnavailable, match="'qqp' split 'train' is not in the mirror"
    ):
        glue.load_split("qqp", "train")
    with pytest.raises(catalog.DatasetUnavailable, match="unknown GLUE task 'cola2'"):
        glue.get_task("cola2")


def test_squad_splits():
    dev = squad.load_split("squad", "dev")
    assert len(dev) == 10570
    row = dev[0]
    assert row["context"][row["answers"]["answer_start"][0] :].startswith(row["answers"]["text"][0])
    v2 = squad.load_split("squad_v2", "dev")
    assert len(v2) == 11873
    assert sum(1 for a in v2["answers"] if not a["text"]) == 5945


def test_gold_answers_score_100_on_real_dev():
    dev = squad.load_split("squad", "dev").select(range(500))
    gold = {r["id"]: r["answers"]["text"][0] for r in dev}
    assert squad.squad_scores(gold, dev) == {"exact_match": 100.0, "f1": 100.0}


def test_squad_train_can_drop_the_guessed_answer_positions():
    full = squad.load_split("squad", "train")
    exact = squad.load_split("squad", "train", exclude_ambiguous=True)
    assert (len(full), len(exact)) == (87_599, 87_599 - 9_438)  # MANIFEST.md: 78,161 exact spans
