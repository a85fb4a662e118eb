"""Scores and decoded predictions: the official GLUE and SQuAD definitions, per task kind."""

from __future__ import annotations

import pytest
import torch

from bertpipe.config import FinetuneConfig, FinetuneHParams
from bertpipe.tasks import squad
from bertpipe.tasks.evaluators import TokenEvaluator
from bertpipe.tasks.spec import resolve_task


def test_official_squad_normalisation_and_scores():
    assert squad.normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert squad.exact_match("the Broncos", "Broncos.") == 1.0
    assert squad.f1_score("Denver Broncos team", "the Denver Broncos") == pytest.approx(0.8)
    assert squad.f1_score("", "") == 1.0 and squad.f1_score("x", "") == 0.0
    rows = [
        {"id": "a", "answers": {"text": ["Santa Clara", "Levi's Stadium"]}},
        {"id": "b", "answers": {"text": []}},
    ]
    assert squad.squad_scores({"a": "levis stadium", "b": ""}, rows) == {
        "exact_match": 100.0,
        "f1": 100.0,
    }
    assert squad.squad_scores({"a": "Santa", "b": "no"}, rows) == {
        "exact_match": 0.0,
        "f1": pytest.approx(100 * (2 / 3) / 2),
    }


def test_glue_metrics_match_scipy_and_sklearn_definitions():
    import numpy as np
    import scipy.stats
    import sklearn.metrics
    import torch

    def score(task, preds, targets, num_labels=2):
        spec = resolve_task(task, FinetuneConfig())
        ev = spec.kind.evaluator(spec, None, FinetuneHParams())
        logits = (
            torch.nn.functional.one_hot(torch.tensor(preds), 2).float()
            if num_labels == 2
            else torch.tensor(preds, dtype=torch.float32)[:, None]
        )
        ev.update({"labels": torch.tensor(targets)}, logits)
        return ev.compute()

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.where(rng.random(300) < 0.8, y, 1 - y)
    assert score("cola", p, y)["mcc"] == pytest.approx(
        100 * sklearn.metrics.matthews_corrcoef(y, p), abs=1e-4
    )
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
    assert [
        resolve_task(t, FinetuneConfig()).selection_metric for t in ("mrpc", "stsb", "cola")
    ] == ["f1", "pearson", "mcc"]


def test_sequence_evaluators_decode_label_names_and_scores():
    cola = resolve_task("cola", FinetuneConfig())
    ev = cola.kind.evaluator(cola, None, FinetuneHParams())
    ev.update(
        {"labels": torch.tensor([1, 0, 1])}, torch.tensor([[0.1, 2.0], [3.0, 0.0], [1.0, 0.5]])
    )
    assert ev.predictions() == ["acceptable", "unacceptable", "unacceptable"]
    stsb = resolve_task("stsb", FinetuneConfig())
    ev = stsb.kind.evaluator(stsb, None, FinetuneHParams())
    ev.update({"labels": torch.tensor([1.0, 4.0])}, torch.tensor([[1.5], [3.25]]))
    assert ev.predictions() == [1.5, 3.25]
    ev.reset()
    assert ev.predictions() == []


def test_token_evaluator_scores_first_subwords_only_and_entity_f1_for_bio():
    labels = ("O", "B-PER", "I-PER")
    gold = torch.tensor([[-100, 1, 2, -100, 0, -100]])  # [CLS] john smith ##s . [SEP]
    logits = torch.full((1, 6, 3), -5.0)
    for pos, tag in [(0, 0), (1, 1), (2, 0), (3, 2), (4, 0), (5, 1)]:  # (3, 5: not scored)
        logits[0, pos, tag] = 5.0
    ev = TokenEvaluator(("entity_f1", "token_acc"), labels)
    ev.update({"labels": gold}, logits)
    scores = ev.compute()
    assert scores["token_acc"] == pytest.approx(100 * 2 / 3)  # "smith" wrong
    assert scores["entity_f1"] == 0.0  # B-PER alone is not the gold PER span "john smith"
    assert ev.predictions() == [["B-PER", "O", "O"]]
    plain = TokenEvaluator(("token_acc",), labels)
    plain.update({"labels": gold}, logits)
    assert set(plain.compute()) == {"token_acc"}


def test_confusion_counts_gold_rows_against_predicted_columns():
    from bertpipe.evaluation.prediction_plots import confusion

    labels, counts = confusion(["a", "a", "b", "b", "b"], ["a", "b", "b", "b", "a"], ["a", "b"])
    assert labels == ["a", "b"] and counts.tolist() == [[1, 1], [1, 2]]
    # without labels: the most frequent gold tags, the rest pooled as "other"
    labels, counts = confusion(list("aaabbc"), list("abbbcc"), top=2)
    assert labels == ["a", "b", "other"]
    assert counts.tolist() == [[1, 2, 0], [0, 1, 1], [0, 0, 1]] and counts.sum() == 6
    with pytest.raises(ValueError, match="3 references but 2 predictions"):
        confusion(["a", "b", "c"], ["a", "b"])


@pytest.mark.parametrize(
    "gold,pred",
    [
        (["yes", "no", "yes"], ["yes", "yes", "yes"]),  # labels
        ([0.5, 3.2, 4.8], [2.5, 2.5, 2.6]),  # scores
        ([["DT", "NN"], ["VB"]], [["DT", "VB"], ["VB"]]),  # tags per word
    ],
)
def test_the_exported_models_predictions_become_a_picture(tmp_path, gold, pred):
    import json

    from bertpipe.evaluation.prediction_plots import plot_task

    summary = {"task": "t", "exported_model": {"init": "pretrained", "seed": 2}}
    folder = tmp_path / "t" / "predictions" / "pretrained"
    folder.mkdir(parents=True)
    (folder / "seed2.json").write_text(json.dumps({"dev": pred, "dev_gold": gold}))
    caption = plot_task(summary, tmp_path, tmp_path / "p.png")
    assert caption and caption.startswith("t: pretrained, seed 2")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    # predictions written before the references were: no picture, no error
    (folder / "seed2.json").write_text(json.dumps({"dev": pred}))
    assert plot_task(summary, tmp_path, tmp_path / "q.png") is None
