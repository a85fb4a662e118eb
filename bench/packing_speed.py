"""Benchmark: packed against padded pretraining batches, on the pipeline's own pretraining data.

One process, the same instances and masks (the collator masks in the padded layout, then
packs), the same network and fused AdamW, steps interleaved (padded, packed, padded, ...).
Prints real tokens/s (padding excluded) of each, the ratio, and the share of the padded
batches that is padding. ``--crop F`` first cuts every instance to a random length in
[F x its length, its length] (then NSP pairs are no longer pairs; only the speed is
meant), to see how the gain grows with padding, and where ``pretrain.packing: auto``
should switch on.

    .venv/bin/python bench/packing_speed.py --data data/pretrain --tokenizer models/tokenizer
    .venv/bin/python bench/packing_speed.py --data data/pretrain --tokenizer models/tokenizer --crop 0.5
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from bertpipe.data.tokenizer import load_tokenizer
from bertpipe.models import bert, modern
from bertpipe.training.objectives import MaskedLM
from bertpipe.training.optim import build_optimizer
from bertpipe.training.pretraining_data import PretrainCollator, PretrainDataModule


def crop(items: list[dict], low: float, rng: np.random.Generator) -> list[dict]:
    out = []
    for x in items:
        n = len(x["input_ids"])
        keep = int(rng.integers(max(3, int(low * n)), n + 1))
        ids = np.asarray(x["input_ids"][:keep]).copy()
        ids[-1] = 3  # [SEP]
        out.append({**x, "input_ids": ids, "type_boundary": min(x["type_boundary"], keep - 1)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/pretrain")
    ap.add_argument("--tokenizer", default="models/tokenizer")
    ap.add_argument("--family", choices=["bert", "modern"], default="bert")
    ap.add_argument("--size", default="mini")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--crop", type=float, default=None)
    ap.add_argument(
        "--row-length", type=int, default=None, help="packed row length (default: max_seq_length)"
    )
    a = ap.parse_args()

    tok = load_tokenizer(a.tokenizer)
    dm = PretrainDataModule(a.data, tok.get_vocab(), a.batch, seed=0, with_nsp=a.family == "bert")
    dm.setup()
    capacity = int(dm.meta["config"]["max_seq_length"])
    collate = {
        packed: PretrainCollator(
            dm.masker,
            dm.pad_id,
            0,
            with_nsp=a.family == "bert",
            pack_capacity=(a.row_length or capacity) if packed else None,
        )
        for packed in (False, True)
    }
    rng = np.random.default_rng(0)
    order = rng.permutation(len(dm.train_set))
    item_batches = []
    for b in range(a.warmup + a.steps):
        items = [dm.train_set[(0, int(i))] for i in order[b * a.batch : (b + 1) * a.batch]]
        item_batches.append(crop(items, a.crop, rng) if a.crop else items)
    feeds = {packed: [collate[packed](items) for items in item_batches] for packed in collate}

    torch.manual_seed(0)
    vocab = tok.get_vocab_size()
    if a.family == "bert":
        cfg = bert.BertConfig.from_size(
            a.size, vocab, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
        )
        model: torch.nn.Module = bert.BertForPreTraining(cfg)
    else:
        model = modern.ModernBertForMaskedLM(modern.ModernConfig.from_size(a.size, vocab))
    opt = build_optimizer(model, "adamw", 1e-4, 0.01, (0.9, 0.999), 1e-6, fused=True)
    objective = MaskedLM(with_nsp=a.family == "bert")
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)

    def step(batch) -> float:
        t = time.perf_counter()
        with bf16:
            loss, _ = objective.step(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    times: dict[bool, list[float]] = {False: [], True: []}
    for b in range(a.warmup + a.steps):
        for packed in (False, True):
            t = step(feeds[packed][b])
            if b >= a.warmup:
                times[packed].append(t)
    real = [int(f["attention_mask"].sum()) for f in feeds[False]][a.warmup :]
    cells = [f["input_ids"].numel() for f in feeds[False]][a.warmup :]
    packed_cells = [f["input_ids"].numel() for f in feeds[True]][a.warmup :]
    rate = {p: sum(real) / sum(ts) for p, ts in times.items()}
    print(
        f"{a.family}-{a.size}, {a.data} (max_seq_length {capacity}), batch {a.batch}, "
        f"{a.steps} timed steps each, crop {a.crop}, packed rows of {a.row_length or capacity}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"  padding in the padded batches: {100 * (1 - sum(real) / sum(cells)):.1f}%")
    print(f"  padding in the packed batches: {100 * (1 - sum(real) / sum(packed_cells)):.1f}%")
    print(
        f"  padded {rate[False]:10.0f} real tokens/s (median step {statistics.median(times[False]):.3f} s)"
    )
    print(
        f"  packed {rate[True]:10.0f} real tokens/s (median step {statistics.median(times[True]):.3f} s)"
    )
    print(f"ratio packed / padded: {rate[True] / rate[False]:.2f}x")


if __name__ == "__main__":
    main()
