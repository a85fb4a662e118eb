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
