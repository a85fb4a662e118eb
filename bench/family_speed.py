"""Benchmark: each new family's pretraining step against a reference implementation, same run.

- ``gpt``: our ``GPTLMHeadModel`` against ``transformers.GPT2LMHeadModel`` of the same
  shape (the architecture ours exports to), next-token loss on the same batch;
- ``elmo``: our ``ELMoForPreTraining`` against a bidirectional LSTM language model written
  plainly with ``torch.nn.LSTM`` (one multi-layer LSTM per direction, the backward one on
  the flipped batch, shared embedding and softmax), the same sizes and the same loss.

One process, the same batch and optimiser (AdamW) on both sides, steps interleaved
(ours, reference, ours, ...) so machine drift hits both. Each side runs in fp32 and in
bf16 autocast and the faster is reported (ours: what ``precision: auto`` picks is one of
them). Prints tokens/s for each and the ratio ours / reference.

    .venv/bin/python bench/family_speed.py --family gpt --batch 128 --seq 32
    .venv/bin/python bench/family_speed.py --family elmo --batch 128 --seq 32
    .venv/bin/python bench/family_speed.py --family gpt --dropout 0.1   # GPT-2's dropout
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from bertpipe.models import elmo, gpt


class PlainBiLM(nn.Module):
    """The reference biLM: torch.nn.LSTM stacks, no residuals, the textbook way."""

    def __init__(self, vocab: int, hidden: int, layers: int, p: float = 0.0):
        super().__init__()
        self.emb = nn.Embedding(vocab, hidden)
        self.drop = nn.Dropout(p)
        self.fwd = nn.LSTM(hidden, hidden, layers, batch_first=True)
        self.bwd = nn.LSTM(hidden, hidden, layers, batch_first=True)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.drop(self.emb(ids))  # (B, T, H); full rows, so flipping is reversing
        f, _ = self.fwd(e)
        b, _ = self.bwd(e.flip(1))
        b = b.flip(1)
        lf = F.linear(f[:, :-1], self.emb.weight, self.bias)  # predicts t+1
        lb = F.linear(b[:, 1:], self.emb.weight, self.bias)  # predicts t-1
        V = lf.shape[-1]
        return (
            F.cross_entropy(lf.reshape(-1, V).float(), ids[:, 1:].reshape(-1))
            + F.cross_entropy(lb.reshape(-1, V).float(), ids[:, :-1].reshape(-1))
        ) / 2


def build(family: str, vocab: int, width: int, layers: int, heads: int, p: float = 0.0):
    """(ours, its loss on ids, reference, its loss on ids)."""
    if family == "gpt":
        import transformers

        c = gpt.GPTConfig(
            vocab_size=vocab, n_positions=512, n_embd=width, n_layer=layers, n_head=heads,
            resid_pdrop=p, embd_pdrop=p, attn_pdrop=p,
        )  # fmt: skip
        ours = gpt.GPTLMHeadModel(c)
        ref = transformers.GPT2LMHeadModel(
            transformers.GPT2Config(
                vocab_size=vocab,
                n_positions=512,
                n_embd=width,
                n_layer=layers,
                n_head=heads,
                resid_pdrop=p,
                embd_pdrop=p,
                attn_pdrop=p,
                attn_implementation="sdpa",
            )  # fmt: skip
        )
        return (
            ours,
            lambda ids: ours(ids, torch.ones_like(ids)).loss,
            ref,
            lambda ids: ref(input_ids=ids, labels=ids).loss,
        )
    c = elmo.ELMoConfig(vocab_size=vocab, hidden_size=width, num_layers=layers, dropout=p)
    ours = elmo.ELMoForPreTraining(c)
    ref = PlainBiLM(vocab, width, layers, p)
    return ours, lambda ids: ours(ids, torch.ones_like(ids)).loss, ref, ref


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=("gpt", "elmo"), required=True)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--layers", type=int, default=None, help="default: gpt 4, elmo 2")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument(
        "--dropout", type=float, default=0.0, help="every dropout of both sides (GPT-2: 0.1)"
    )
    a = ap.parse_args()
    layers = a.layers or (4 if a.family == "gpt" else 2)
    torch.manual_seed(0)
    ours, ours_loss, ref, ref_loss = build(a.family, a.vocab, a.width, layers, a.heads, a.dropout)
    ours.train(), ref.train()
    ids = torch.randint(5, a.vocab, (a.batch, a.seq), generator=torch.Generator().manual_seed(0))
    opts = {
        "ours": torch.optim.AdamW(ours.parameters(), 1e-4),
        "reference": torch.optim.AdamW(ref.parameters(), 1e-4),
    }
    losses = {"ours": ours_loss, "reference": ref_loss}
    bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)

    def step(side: str, precision: str) -> float:
        t = time.perf_counter()
        with bf16() if precision == "bf16" else contextlib.nullcontext():
            loss = losses[side](ids)
        loss.backward()
        opts[side].step()
        opts[side].zero_grad(set_to_none=True)
        return time.perf_counter() - t

    times: dict[tuple[str, str], list[float]] = {}
    for i in range(a.warmup + a.steps):
        for side in ("ours", "reference"):
            for precision in ("fp32", "bf16"):
                dt = step(side, precision)
                if i >= a.warmup:
                    times.setdefault((side, precision), []).append(dt)
    tokens = a.batch * a.seq
    rate = {k: tokens / statistics.median(v) for k, v in times.items()}
    reference = "transformers GPT2LMHeadModel" if a.family == "gpt" else "torch.nn.LSTM biLM, plain"
    print(
        f"{a.family}: L{layers}/H{a.width}, vocab {a.vocab}, {a.batch} x {a.seq} tokens a step, "
        f"dropout {a.dropout}"
    )
    for (side, precision), r in sorted(rate.items()):
        name = f"ours ({type(ours).__name__})" if side == "ours" else reference
        print(f"  {name}, {precision}: {r:,.0f} tokens/s")
    best = {
        side: max(r for (s, _), r in rate.items() if s == side) for side in ("ours", "reference")
    }
    print(
        f"  ratio ours / reference (each at its best precision): {best['ours'] / best['reference']:.2f}x"
    )


if __name__ == "__main__":
    main()
