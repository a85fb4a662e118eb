"""Benchmark: our pretraining step against transformers.BertForPreTraining on the same batch.

One process, same config, same batch, same optimiser (fused AdamW: what our stage
uses on cpu/cuda without a gradient scaler, and transformers' Trainer default), steps interleaved
(ours, theirs, ours, ...) so machine drift hits both. transformers runs at its
own best precision on this device (fp32 and bf16 autocast are both measured and
the faster is the reference). Prints tokens/s for each and the ratio, and model FLOPs
utilisation (6 x 12 x L x H^2 + 12 x L x H x S per token, plus the MLM head on the
masked positions) against the matmul ceiling of this machine measured in the same run
(a large bf16 and fp32 ``torch.mm``, and one at the model's FFN shape); on a GPU also
against ``--peak-tflops`` (default the H100/H200's 989 bf16 dense).

    .venv/bin/python bench/pretrain_speed.py --size mini --seq 128 --batch 32
    .venv/bin/python bench/pretrain_speed.py --size base --seq 128 --batch 64 --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from bertpipe.models.bert import BertConfig, BertForPreTraining, flops_per_token
from bertpipe.training.optim import build_optimizer


def make_batch(B: int, T: int, vocab: int, mlm_prob: float, device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (B, T), generator=g)
    ids[:, 0], ids[:, T // 2], ids[:, -1] = 2, 3, 3
    types = (torch.arange(T) > T // 2).long().expand(B, T).clone()
    labels = torch.full((B, T), -100, dtype=torch.long)
    k = round(mlm_prob * (T - 3))
    for r in range(B):
        pos = torch.randperm(T - 3, generator=g)[:k] + 1
        pos[pos >= T // 2] += 1
        labels[r, pos] = ids[r, pos]
        ids[r, pos] = 4
    nsp = torch.randint(0, 2, (B,), generator=g)
    return {
        k: v.to(device)
        for k, v in dict(
            input_ids=ids,
            token_type_ids=types,
            attention_mask=torch.ones_like(ids),
            mlm_labels=labels,
            nsp_labels=nsp,
        ).items()
    }


def matmul_ceiling(device, dtype, m: int, k: int, n: int, reps: int = 10) -> float:
    """FLOP/s of (m x k) @ (k x n) in ``dtype`` on ``device``: the median of ``reps`` timings."""
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    for _ in range(3):
        torch.mm(a, b)
    times = [timed_step(lambda: torch.mm(a, b), device) for _ in range(reps)]
    return 2 * m * k * n / statistics.median(times)


def timed_step(step_fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    step_fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="mini")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile our model")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    a = ap.parse_args()
    import transformers

    device = torch.device(a.device)
    torch.manual_seed(0)
    cfg = BertConfig.from_size(a.size, a.vocab)
    batch = make_batch(a.batch, a.seq, a.vocab, 0.15, device)
    bf16 = torch.autocast(device.type, dtype=torch.bfloat16)

    ours = BertForPreTraining(cfg).to(device).train()
    ours_fwd = torch.compile(ours) if a.compile else ours
    opt_o = build_optimizer(ours, "adamw", 1e-4, 0.01, (0.9, 0.999), 1e-6, fused=True)

    hf_cfg = transformers.BertConfig(
        vocab_size=a.vocab,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        attn_implementation="sdpa",
    )
    theirs = transformers.BertForPreTraining(hf_cfg).to(device).train()
    opt_t = torch.optim.AdamW(theirs.parameters(), lr=1e-4, weight_decay=0.01, fused=True)

    def step_ours():
        with bf16:
            loss = ours_fwd(**batch).loss
        loss.backward()
        opt_o.step()
        opt_o.zero_grad(set_to_none=True)

    def step_theirs(precision):
        ctx = bf16 if precision == "bf16" else contextlib.nullcontext()
        with ctx:
            out = theirs(
                input_ids=batch["input_ids"],
                token_type_ids=batch["token_type_ids"],
                attention_mask=batch["attention_mask"],
                labels=batch["mlm_labels"],
                next_sentence_label=batch["nsp_labels"],
            )
        out.loss.backward()
        opt_t.step()
        opt_t.zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {
        "ours bf16": [],
        "transformers fp32": [],
        "transformers bf16": [],
    }
    fns = {
        "ours bf16": step_ours,
        "transformers fp32": lambda: step_theirs("fp32"),
        "transformers bf16": lambda: step_theirs("bf16"),
    }
    for i in range(a.warmup + a.steps):
        for name, fn in fns.items():
            t = timed_step(fn, device)
            if i >= a.warmup:
                times[name].append(t)

    tokens = a.batch * a.seq
    rates = {k: tokens / statistics.median(v) for k, v in times.items()}
    ceilings = {
        "bf16 mm 4096^3": matmul_ceiling(device, torch.bfloat16, 4096, 4096, 4096),
        "fp32 mm 4096^3": matmul_ceiling(device, torch.float32, 4096, 4096, 4096),
        f"bf16 mm FFN {tokens}x{cfg.hidden_size}x{cfg.intermediate_size}": matmul_ceiling(
            device, torch.bfloat16, tokens, cfg.hidden_size, cfg.intermediate_size
        ),
    }
    masked = float((batch["mlm_labels"] != -100).float().mean())
    fpt = flops_per_token(cfg, a.seq, masked)
    ref_name = max(("transformers fp32", "transformers bf16"), key=rates.get)
    print(
        f"BERT-{a.size} (L{cfg.num_hidden_layers} H{cfg.hidden_size}), vocab {a.vocab}, "
        f"batch {a.batch} x seq {a.seq}, {a.steps} timed steps each, device {device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    for k, v in rates.items():
        print(f"  {k:18s} {v:10.0f} tokens/s")
    print(
        f"ratio ours / {ref_name} (transformers' best): {rates['ours bf16'] / rates[ref_name]:.2f}x"
    )
    print(f"model FLOPs per token {fpt / 1e6:.1f} M (masked fraction {masked:.3f})")
    for name, flops in ceilings.items():
        print(f"  ceiling {name:34s} {flops / 1e9:8.0f} GFLOP/s")
    bf16_ceiling = ceilings["bf16 mm 4096^3"]
    for k, v in rates.items():
        achieved = v * fpt
        line = (
            f"  {k:18s} {achieved / 1e9:6.0f} GFLOP/s = {100 * achieved / bf16_ceiling:5.1f}% "
            f"of the bf16 mm ceiling, {100 * achieved / ceilings['fp32 mm 4096^3']:5.1f}% of fp32"
        )
        if device.type == "cuda":
            line += f", MFU {100 * achieved / (a.peak_tflops * 1e12):5.1f}% of {a.peak_tflops:.0f} TFLOP/s"
        print(line)


if __name__ == "__main__":
    main()
