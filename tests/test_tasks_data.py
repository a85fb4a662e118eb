"""GLUE and SQuAD splits load from the mirror with the official row counts and label balance."""

from __future__ import annotations

from collections import Counter

import pytest

from bertpipe import catalog
from bertpipe.tasks import glue, squad


@pytest.mark.parametrize("task,split,rows,labels", [
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
])
def test_glue_counts_and_labels(task, split, rows, labels):
    ds = glue.load_split(task, split)
    assert len(ds) == rows
    assert Counter(ds["label"]) == labels
    t = glue.get_task(task)
    assert t.text_a in ds.column_names and (t.text_b is None or t.text_b in ds.column_names)


def test_stsb_is_regression_and_mrpc_text_is_clean():
    ds = glue.load_split("stsb", "dev")
    assert len(ds) == 1500 and isinstance(ds[0]["label"], float)
    assert 0.0 <= min(ds["label"]) and max(ds["label"]) <= 5.0
    mrpc = glue.load_split("mrpc", "dev")
    assert mrpc[0]["sentence1"].startswith("He said the foodservice pie business")


def test_missing_glue_split_is_reported():
    with pytest.raises(catalog.DatasetUnavailable, match="'qqp' split 'train' is not in the mirror"):
        glue.load_split("qqp", "train")
    with pytest.raises(catalog.DatasetUnavailable, match="unknown GLUE task 'cola2'"):
        glue.get_task("cola2")


def test_squad_splits():
    dev = squad.load_split("squad", "dev")
    assert len(dev) == 10570
    row = dev[0]
    assert row["context"][row["answers"]["answer_start"][0]:].startswith(row["answers"]["text"][0])
    v2 = squad.load_split("squad_v2", "dev")
    assert len(v2) == 11873
    assert sum(1 for a in v2["answers"] if not a["text"]) == 5945


def test_official_squad_normalisation_and_scores():
    assert squad.normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert squad.exact_match("the Broncos", "Broncos.") == 1.0
    assert squad.f1_score("Denver Broncos team", "the Denver Broncos") == pytest.approx(0.8)
    assert squad.f1_score("", "") == 1.0 and squad.f1_score("x", "") == 0.0
    rows = [{"id": "a", "answers": {"text": ["Santa Clara", "Levi's Stadium"]}},
            {"id": "b", "answers": {"text": []}}]
    assert squad.squad_scores({"a": "levis stadium", "b": ""}, rows) == {"exact_match": 100.0, "f1": 100.0}
    assert squad.squad_scores({"a": "Santa", "b": "no"}, rows) == {"exact_match": 0.0,
                                                                   "f1": pytest.approx(100 * (2 / 3) / 2)}


def test_gold_answers_score_100_on_real_dev():
    dev = squad.load_split("squad", "dev").select(range(500))
    gold = {r["id"]: r["answers"]["text"][0] for r in dev}
    assert squad.squad_scores(gold, dev) == {"exact_match": 100.0, "f1": 100.0}


def test_glue_metrics_match_scipy_and_sklearn_definitions():
    import numpy as np
    import scipy.stats
    import sklearn.metrics
    import torch

    from bertpipe.tasks.metrics import GLUE_METRICS, SequenceEvaluator, selection_metric

    def score(task, preds, targets, num_labels=2):
        ev = SequenceEvaluator(GLUE_METRICS[task][0], num_labels)
        logits = (torch.nn.functional.one_hot(torch.tensor(preds), 2).float() if num_labels == 2
                  else torch.tensor(preds, dtype=torch.float32)[:, None])
        ev.update({"labels": torch.tensor(targets)}, logits)
        return ev.compute()

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.where(rng.random(300) < 0.8, y, 1 - y)
    assert score("cola", p, y)["mcc"] == pytest.approx(100 * sklearn.metrics.matthews_corrcoef(y, p), abs=1e-4)
    # A constant predictor learned nothing: 0, as GLUE and scikit-learn score it (torchmetrics
    # alone gives 11.1 here).
    assert score("cola", np.ones(64, int), np.r_[np.ones(45, int), np.zeros(19, int)])["mcc"] == 0.0
    m = score("mrpc", p, y)
    assert m["f1"] == pytest.approx(100 * sklearn.metrics.f1_score(y, p), abs=1e-4)
    assert m["acc"] == pytest.approx(100 * (p == y).mean(), abs=1e-4)
    s, t = rng.random(200), rng.random(200)
    m = score("stsb", s, t.astype(np.float32), num_labels=1)
    assert m["pearson"] == pytest.approx(100 * scipy.stats.pearsonr(s, t)[0], abs=1e-3)
    assert m["spearman"] == pytest.approx(100 * scipy.stats.spearmanr(s, t)[0], abs=1e-3)
    assert score("stsb", np.zeros(50), t[:50].astype(np.float32), num_labels=1)["pearson"] == 0.0
    assert selection_metric("mrpc") == "f1" and selection_metric("stsb") == "pearson"


def test_squad_train_can_drop_the_guessed_answer_positions():
    full = squad.load_split("squad", "train")
    exact = squad.load_split("squad", "train", exclude_ambiguous=True)
    assert (len(full), len(exact)) == (87_599, 87_599 - 9_438)  # MANIFEST.md: 78,161 exact spans
