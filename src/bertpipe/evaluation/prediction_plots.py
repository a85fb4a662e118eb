"""What each task's exported model predicts on dev: confusion matrices and score histograms.

Owns the report's per-task prediction pictures, drawn from the finetune stage's
predictions files (``results/finetune/TASK/predictions/INIT/seedN.json``: ``dev``
predictions and ``dev_gold`` references) for the run whose model the stage exported:

* labels (GLUE classification): a confusion matrix, gold rows against predicted columns,
  counts and row shares, so "F1 80.4" that is "always equivalent" shows as one full column;
* scores (STS-B): the histograms of predicted and gold scores on shared bins, so a model
  that predicts the mean shows as one spike;
* tags (POS, chunking): the confusion of the most frequent gold tags (the rest as "other").

SQuAD's answers have no such picture (the report's F1/EM say it). Files from before the
references were written (no ``dev_gold``) are skipped.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

OTHER = "other"


def confusion(
    gold: list, predicted: list, labels: list[str] | None = None, top: int = 10
) -> tuple[list[str], np.ndarray]:
    """(labels, counts) with counts[i, j] = examples of gold label i predicted as j.

    Without ``labels``: the ``top`` most frequent gold labels, in frequency order, and
    ``other`` for the rest (when there is a rest)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} references but {len(predicted)} predictions")
    if labels is None:
        ranked = [label for label, _ in Counter(gold).most_common()]
        labels = ranked[:top] + ([OTHER] if len(ranked) > top else [])
    index = {label: i for i, label in enumerate(labels)}
    fallback = index.get(OTHER)
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for g, p in zip(gold, predicted, strict=True):
        i, j = index.get(g, fallback), index.get(p, fallback)
        if i is not None and j is not None:
            counts[i, j] += 1
    return list(labels), counts


def _exported_predictions(summary: dict, results_dir: Path) -> dict | None:
    exported = summary.get("exported_model")
    if not exported:
        return None
    path = (
        results_dir
        / summary["task"]
        / "predictions"
        / exported["init"]
        / f"seed{exported['seed']}.json"
    )
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data if "dev_gold" in data else None


def plot_task(summary: dict, results_dir: Path, out: Path) -> str | None:
    """Draw ``out`` (PNG) for one task; returns its caption, or None when there is no picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = _exported_predictions(summary, results_dir)
    if data is None or not data["dev"]:
        return None
    pred, gold = data["dev"], data["dev_gold"]
    exported = summary["exported_model"]
    who = (
        f"{summary['task']}: {exported['init']}, seed {exported['seed']}, {len(gold)} dev examples"
    )
    if isinstance(gold[0], int | float) and not isinstance(gold[0], bool):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        bins = np.linspace(min(gold + pred), max(gold + pred), 25).tolist()
        ax.hist(gold, bins=bins, alpha=0.6, label="gold")
        ax.hist(pred, bins=bins, alpha=0.6, label="predicted")
        ax.set_xlabel("score")
        ax.set_ylabel("examples")
        ax.legend()
        ax.set_title(who, fontsize=9)
        caption = f"{who}: predicted against gold scores"
    else:
        if isinstance(gold[0], list):  # tags per word
            gold = [t for sent in gold for t in sent]
            pred = [t for sent in pred for t in sent]
            labels, counts = confusion(gold, pred)
        else:
            labels, counts = confusion(gold, pred, sorted(set(gold) | set(pred)))
        shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        size = max(3.5, 0.45 * len(labels) + 1.5)
        fig, ax = plt.subplots(figsize=(size + 1, size))
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        for i in range(len(labels)):
            for j in range(len(labels)):
                if counts[i, j]:
                    color = "white" if shares[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, str(counts[i, j]), ha="center", va="center", fontsize=7, color=color
                    )
        ax.set_title(who, fontsize=9)
        caption = f"{who}: confusion (counts; shading = share of the gold row)"
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return caption
