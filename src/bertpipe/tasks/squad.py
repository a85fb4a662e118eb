"""SQuAD v1.1 / v2.0: load the official JSON layout (mirror) or the hub into one flat schema.

Owns the flattening of ``{"data": [{"title", "paragraphs": [{"context", "qas"}]}]}``
into rows ``id, title, context, question, answers{text, answer_start}`` (the hub's
schema); unanswerable v2.0 questions have empty answer lists.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from bertpipe import catalog


def flatten(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        data = json.load(f)["data"]
    rows = []
    for article in data:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                rows.append({
                    "id": qa["id"], "title": article["title"], "context": para["context"],
                    "question": qa["question"],
                    "answers": {"text": [a["text"] for a in qa["answers"]],
                                "answer_start": [a["answer_start"] for a in qa["answers"]]},
                })
    return rows


def load_split(name: str, split: str):
    """``name`` is ``squad`` (v1.1) or ``squad_v2``; returns a ``datasets.Dataset``."""
    spec = catalog.get_spec(name)
    root = catalog.mirror_root()
    if root is None:
        return catalog.load_hub(name, spec.hub_id, spec.hub_config, spec.hub_revision,
                                spec.hub_splits.get(split, split), streaming=False)
    import datasets

    rows = []
    for path in catalog.mirror_files(spec, split, root):
        rows += flatten(path)
    return datasets.Dataset.from_list(rows)


# ------------------------------------------------------------------ official evaluation
# The rules of the official evaluate-v1.1.py / evaluate-v2.0.py scripts: answers are
# compared after lower-casing and removing punctuation, articles and extra whitespace;
# F1 is over the bag of normalised tokens; each question takes its best ground truth.


def normalize_answer(s: str) -> str:
    import re
    import string

    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(prediction: str, truth: str) -> float:
    from collections import Counter

    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not pred or not gold:  # v2.0: no-answer is right only against no-answer
        return float(pred == gold)
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def squad_scores(predictions: dict[str, str], dataset) -> dict[str, float]:
    """EM and F1 in percent over ``dataset`` rows (unanswerable rows have no answer texts)."""
    em = f1 = 0.0
    for row in dataset:
        truths = row["answers"]["text"] or [""]
        pred = predictions.get(row["id"], "")
        em += max(exact_match(pred, t) for t in truths)
        f1 += max(f1_score(pred, t) for t in truths)
    n = len(dataset)
    return {"exact_match": 100 * em / n, "f1": 100 * f1 / n}
