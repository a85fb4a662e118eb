"""The DVC metrics files: a stage's numbers worth diffing, flat and short.

A stage writes two JSON files: its whole summary (``results/``: configuration echoes,
per-seed runs, texts such as fill-mask predictions; what the report reads) and its metrics
file (``metrics/``: a handful of numbers, what ``dvc metrics show``, ``dvc metrics diff`` and
``dvc exp show`` print). This module owns the second: which numbers, under which names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bertpipe.atomic import write_json


def pick(summary: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, float]:
    """``{name: summary[dotted.key]}`` for every ``name -> dotted.key`` in ``keys`` whose value
    is a number (a key the summary lacks, or a None, is left out)."""
    out: dict[str, float] = {}
    for name, dotted in keys.items():
        value: Any = summary
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = value
    return out


def write_summary_and_metrics(
    summary_path: str | Path, metrics_path: str | Path, summary: Any, metrics: dict
) -> None:
    """The whole summary, then the metrics file (both atomic, in this order: a metrics file
    never describes a summary that is not there)."""
    write_json(summary_path, summary)
    write_json(metrics_path, metrics)


CORPUS = {
    "documents": "total.documents",
    "sentences": "total.sentences",
    "characters": "total.characters",
}
TOKENIZER = {
    "vocab_size": "vocab_size",
    "unk_rate": "unk_rate",
    "tokens_per_word": "tokens_per_word",
}
PRETRAIN_DATA = {
    "instances": "train.instances",
    "tokens": "train.tokens",
    "padding_fraction": "train.padding_fraction",
}


def pretrain_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The family's held-out accuracies and perplexity, and its training speed; the losses,
    budget, step counts and fill-mask texts stay in the summary."""
    keys = {
        k: k for k in summary if k.startswith("val/") and k.endswith("_acc") and "baseline" not in k
    }
    keys |= {"val/perplexity": "val/perplexity", "train/tokens_per_s": "train/tokens_per_s"}
    return pick(summary, keys)


def finetune_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """``{init label: median dev score}`` of the task's selection metric (its name is in the
    summary); ``{}`` for a skipped task."""
    metric = summary.get("selection_metric")
    return {
        label: r["summary"][metric]["median"]
        for label, r in (summary.get("results") or {}).items()
        if metric in r.get("summary", {})
    }
