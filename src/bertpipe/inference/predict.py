"""Prediction with a fine-tuned model: ``bertpipe predict`` and the MLflow pyfunc model.

Owns loading a fine-tuned model from wherever it is (a model directory, an MLflow
Model folder, ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``, ``runs:/RUN/PATH``),
and one prediction pass: rows in the task kind's schema, encoded and batched exactly
as the fine-tuning stage scored its dev set (the task card's ``max_length``, batch
size and precision, ``tasks/card.py``), forward, records decoded by the kind's
collector, and, when the rows carry gold labels, the task's metrics by its own
evaluator. Records are yielded batch by batch (QA: once its windows are decoded), so a
file streams to its output.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bertpipe.data.packing import PACKED_KEYS, fine_tuning_capacity
from bertpipe.errors import InputError

log = logging.getLogger("bertpipe.predict")


def resolve_model(source: str | Path, cache: str | Path | None = None) -> Path:
    """The fine-tuned model directory (the one holding ``bertpipe_task.json``) of ``source``."""
    from bertpipe.tasks.card import CARD_FILE

    text = str(source)
    if text.startswith(("models:/", "runs:/", "mlflow-artifacts:/")):
        from bertpipe import tracking

        folder = tracking.download(text, cache)
    else:
        folder = Path(text).expanduser()
        if not folder.exists():
            raise InputError(f"{folder}: no such model directory (or models:/NAME@champion URI)")
    if (folder / CARD_FILE).exists() or (folder / "config.json").exists():
        return folder
    found = sorted(folder.rglob(CARD_FILE))  # an MLflow Model folder: artifacts/model/
    return found[0].parent if found else folder


def _autocast(precision: str, device: torch.device):
    if precision.startswith("bf16") and (
        device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported()
    ):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16") and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


@dataclass
class PassStats:
    examples: int = 0
    truncated: int = 0
    seconds: float = 0.0
    metrics: dict[str, float] | None = None
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def examples_per_s(self) -> float:
        return self.examples / self.seconds if self.seconds else 0.0


class TaskPredictor:
    """A fine-tuned model, its tokenizer and task card, ready to predict."""

    def __init__(self, source: str | Path, *, device: str = "cpu", batch_size: int | None = None):
        from bertpipe.data.tokenizer import load_existing
        from bertpipe.models.registry import checkpoint_family
        from bertpipe.tasks.card import hparams_from_card, read_card, spec_from_card

        self.folder = resolve_model(source)
        self.card = read_card(self.folder)
        self.spec = spec_from_card(self.card)
        self.hp = hparams_from_card(self.card)
        if batch_size is not None:
            self.hp = self.hp.model_copy(update={"batch_size": batch_size})
        family = checkpoint_family(self.folder)
        self.device = torch.device(device)
        self.model = family.load(family.head(self.spec.kind.head), self.folder).eval()
        self.model.to(self.device)
        self.tok = load_existing(str(self.folder), key=f"the model's tokenizer ({self.folder})")
        self.pad_id = self.tok.token_to_id("[PAD]") or 0

    @property
    def task(self) -> str:
        return self.spec.name

    def read(self, path: str | Path, max_examples: int | None = None) -> tuple[list[dict], bool]:
        """A prediction file as rows (and whether it has gold labels); empty is an error."""
        path = Path(path)
        rows, gold = self.spec.kind.read_inputs(path, self.spec)
        if max_examples is not None:
            rows = rows[:max_examples]
        if not rows:
            raise InputError(f"{path}: no examples to predict")
        return rows, gold

    def predict(
        self, rows: list[dict], gold: bool = False, progress: bool = False
    ) -> tuple[Iterator[dict], PassStats]:
        """Records in input order (generator) and the pass's stats, filled when it is exhausted."""
        import datasets

        stats = PassStats(examples=len(rows))
        ds = datasets.Dataset.from_list(rows)
        kind = self.spec.kind
        encoded = kind.encode(self.tok, ds, self.hp, train=False)
        stats.skipped = dict(encoded.skipped)
        stats.truncated = kind.truncated(self.tok, ds, encoded, self.hp)
        if stats.truncated:
            log.warning(
                "%d of %d examples are longer than the model's max_length %d tokens and were "
                "truncated",
                stats.truncated,
                len(rows),
                self.hp.max_length,
            )
        return self._records(rows, encoded, gold, progress, stats), stats

    def _records(self, rows, encoded, gold: bool, progress: bool, stats: PassStats):
        from torch.utils.data import DataLoader
        from tqdm import tqdm

        kind = self.spec.kind
        collector = kind.collector(self.spec, rows, encoded, self.hp)
        evaluator = kind.evaluator(self.spec, encoded, self.hp) if gold else None
        pack_into = fine_tuning_capacity(self.hp, self.model)  # as the stage scored its dev set
        loader = DataLoader(
            encoded.rows,
            batch_size=self.hp.batch_size,
            collate_fn=lambda b: kind.batch(b, self.pad_id, pack_into),
        )
        bar = tqdm(total=len(rows), unit="ex", disable=not progress, desc=self.task)
        done, started = 0, time.perf_counter()
        with torch.inference_mode():
            for batch in loader:
                moved = {k: v.to(self.device) for k, v in batch.items()}
                with _autocast(self.card["precision"], self.device):
                    packed = {k: moved[k] for k in PACKED_KEYS if k in moved}
                    logits = self.model(
                        moved["input_ids"],
                        moved["token_type_ids"],
                        moved["attention_mask"],
                        **packed,
                    ).logits
                if evaluator is not None:
                    evaluator.update(batch, logits)
                for record in collector.add(batch, logits):
                    yield {**_inputs(rows[done]), **record}
                    done += 1
                    bar.update(1)
            for record in collector.finish():
                yield {**_inputs(rows[done]), **record}
                done += 1
                bar.update(1)
        bar.close()
        stats.seconds = time.perf_counter() - started
        if evaluator is not None:
            stats.metrics = evaluator.compute()


ECHOED_INPUTS = ("text_a", "text_b", "tokens", "id", "question")
"""What a record repeats of its input (texts, words, the question), never the gold label."""


def _inputs(row: dict) -> dict:
    return {k: row[k] for k in ECHOED_INPUTS if k in row}


def write_records(records: Iterator[dict], out: str | Path) -> int:
    """Records to ``out`` (``.jsonl``, or ``.csv`` with probabilities as ``p_LABEL`` columns and
    word lists space-joined), written as they come; the number written."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    n = 0
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer: Any = None
        for record in records:
            if out.suffix == ".csv":
                flat = _flat(record)
                if writer is None:
                    writer = csv.DictWriter(f, fieldnames=list(flat))
                    writer.writeheader()
                writer.writerow(flat)
            else:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(out)  # a killed run never leaves a complete-looking file
    return n


def _flat(record: dict) -> dict:
    flat = {}
    for k, v in record.items():
        if isinstance(v, dict):
            flat.update({f"p_{name}": p for name, p in v.items()})
        elif isinstance(v, list):
            flat[k] = " ".join("_" if x is None else str(x) for x in v)
        else:
            flat[k] = v
    return flat
