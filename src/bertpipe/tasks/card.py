"""The task card: what a fine-tuned model directory says about the task it was trained for.

Owns ``bertpipe_task.json``, written beside the weights when a fine-tuned model is
exported, and read back by ``bertpipe predict`` and the MLflow pyfunc model: the
task's name and kind, label names, metrics, the columns a prediction file may hold,
and the encoding hyperparameters (``max_length``, SQuAD's windows and decoding) and
precision the model was scored with, so a prediction encodes exactly as the dev set
was. ``spec_from_card`` turns a card back into a ``TaskSpec`` (without data loaders).
"""

from __future__ import annotations

import json
from pathlib import Path

from bertpipe.atomic import write_json
from bertpipe.config import FinetuneHParams
from bertpipe.errors import InputError
from bertpipe.tasks.kinds import KINDS
from bertpipe.tasks.spec import TaskSpec

CARD_FILE = "bertpipe_task.json"
ENCODING = ("max_length", "doc_stride", "n_best", "max_answer_length", "batch_size", "packing")


def write_card(folder: str | Path, spec: TaskSpec, hp: FinetuneHParams, precision: str) -> Path:
    card = {
        "task": spec.name,
        "kind": spec.kind.name,
        "labels": list(spec.labels) if spec.labels is not None else None,
        "metrics": list(spec.metrics),
        "unanswerable": spec.unanswerable,
        "origin": spec.origin,
        "columns": {k: list(v) for k, v in spec.columns.items()},
        "file_names": list(spec.file_names) if spec.file_names else None,
        "conll_columns": list(spec.conll_columns),
        "precision": precision,
        **{k: getattr(hp, k) for k in ENCODING},
    }
    return write_json(Path(folder) / CARD_FILE, card)


def read_card(folder: str | Path) -> dict:
    path = Path(folder) / CARD_FILE
    if not path.exists():
        what = (
            "a pretrained model (use `bertpipe fill-mask`, or fine-tune it with `bertpipe finetune`)"
            if (Path(folder) / "config.json").exists()
            else "not a model directory"
        )
        raise InputError(
            f"{folder}: no task head ({CARD_FILE} is missing): {what}; predict needs a fine-tuned "
            "model such as results/finetune/TASK/model or models:/bertpipe-TASK@champion"
        )
    return json.loads(path.read_text())


def spec_from_card(card: dict) -> TaskSpec:
    def no_data(split: str):
        raise InputError(f"task {card['task']}: a model's card holds no data ({split})")

    return TaskSpec(
        card["task"],
        KINDS[card["kind"]],
        tuple(card["labels"]) if card["labels"] is not None else None,
        tuple(card["metrics"]),
        no_data,
        unanswerable=card["unanswerable"],
        origin=card["origin"],
        columns={k: tuple(v) for k, v in card["columns"].items()},
        file_names=tuple(card["file_names"]) if card["file_names"] else None,
        conll_columns=(card["conll_columns"][0], card["conll_columns"][1]),
    )


def hparams_from_card(card: dict) -> FinetuneHParams:
    """The encoding hyperparameters the model was scored with (no subsetting). A card written
    before dev batches were packed has no ``packing``: its dev set was scored padded."""
    encoding = {k: card[k] for k in ENCODING if k != "packing"}
    encoding["packing"] = card.get("packing", False)
    return FinetuneHParams(**encoding, max_train_examples=None, max_eval_examples=None)
