"""GPU check: BERT-base and the modern family, padded vs packed, eager vs compiled, and one DVC stage.

On a CUDA machine, in a few minutes: for BERT-base (L12/H768) and the modern family
at the same shape, seq 128, bf16 autocast, a training step (forward, backward, fused
AdamW) on the same instances

* padded (one row per instance, padded to the longest) and packed (several instances
  per row, block-diagonal attention, ``data/packing.py``),
* eager and ``torch.compile``d (``nn.Module.compile``: state-dict names unchanged),

reporting real tokens/s (padding excluded), model FLOPs utilisation against the
989 TFLOP/s bf16 dense spec (``--peak-tflops``) and against a large bf16 matmul
measured in the same run, and peak memory. Then one ``dvc repro pretrain@bert`` of
the tiny DAG with ``pretrain.accelerator: gpu`` in a clean clone (needs the dataset
mirror; said so when missing). The results table is appended to docs/benchmarks.md
(``--out``).

Instance lengths are drawn uniformly from [16, 128] (sentence-level data has that
spread; the demo's NSP pairs are 0.7% padding, where packing has nothing to remove).

    .venv/bin/python bench/gpu_check.py                 # on the GPU machine
    .venv/bin/python bench/gpu_check.py --dry-run --out /tmp/gpu_check.md   # CPU, tiny, seconds

``--dry-run`` runs every code path on the CPU at toy sizes (BERT-tiny shape, seq 32,
two steps, ``torch.compile`` with the ``eager`` backend so Dynamo traces the models
without Inductor's C++ build) so the suite keeps the script working.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bertpipe.data.packing import pack_batch
from bertpipe.models import bert, modern
from bertpipe.training.optim import build_optimizer
from pretrain_speed import matmul_ceiling, timed_step  # bench/, beside this script

REPO = Path(__file__).resolve().parents[1]


def instances(n: int, seq: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Padded (n, seq) arrays of instances with lengths uniform in [seq / 8, seq], 15% masked."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(max(4, seq // 8), seq + 1, n)
    ids = np.zeros((n, seq), dtype=np.int64)
    types = np.zeros_like(ids)
    attn = np.zeros_like(ids)
    labels = np.full_like(ids, -100)
    for r, length in enumerate(lengths):
        ids[r, :length] = rng.integers(5, vocab, length)
        ids[r, 0], ids[r, length - 1] = 2, 3
        types[r, length // 2 : length] = 1
        attn[r, :length] = 1
        chosen = rng.random(length) < 0.15
        chosen[[0, length - 1]] = False
        labels[r, :length][chosen] = ids[r, :length][chosen]
        ids[r, :length][chosen] = 4
    return {
        "input_ids": ids,
        "token_type_ids": types,
        "attention_mask": attn,
        "mlm_labels": labels,
        "lengths": lengths,
    }


def batches(data: dict[str, np.ndarray], seq: int, device) -> dict[str, dict[str, torch.Tensor]]:
    arrays = {k: v for k, v in data.items() if k != "lengths"}
    width = -(-int(data["lengths"].max()) // 8) * 8
    padded = {k: v[:, :width] for k, v in arrays.items()}
    fill = {"input_ids": 0, "token_type_ids": 0, "attention_mask": 0, "mlm_labels": -100}
    packed = pack_batch(arrays, data["lengths"], seq, fill)
    n = len(data["lengths"])
    nsp = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(0))

    def move(d):
        return {
            **{k: torch.from_numpy(v).to(device) for k, v in d.items()},
            "nsp_labels": nsp.to(device),
        }

    return {"padded": move(padded), "packed": move(packed)}


def build(family: str, size: str, vocab: int):
    if family == "bert":
        cfg = bert.BertConfig.from_size(
            size, vocab, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
        )
        return bert.BertForPreTraining(cfg), bert.flops_per_token
    cfg = modern.ModernConfig.from_size(size, vocab)
    return modern.ModernBertForMaskedLM(cfg), modern.flops_per_token


def step_fn(model, opt, batch: dict, device, with_nsp: bool):
    bf16 = torch.autocast(device.type, dtype=torch.bfloat16)
    keys = ("position_ids", "instance_ids", "cls_index")
    extra = {k: batch[k] for k in keys if k in batch}
    if not with_nsp:
        extra.pop("cls_index", None)

    def step():
        with bf16:
            out = model(
                batch["input_ids"],
                batch["token_type_ids"],
                batch["attention_mask"],
                mlm_labels=batch["mlm_labels"],
                nsp_labels=batch["nsp_labels"] if with_nsp else None,
                **extra,
            )
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def measure(a, device) -> list[dict]:
    data = instances(a.batch, a.seq, a.vocab)
    real = int(data["attention_mask"].sum())
    padding = 1 - real / (a.batch * a.seq)
    feeds = batches(data, a.seq, device)
    masked = float((data["mlm_labels"] != -100).sum()) / real
    rows = []
    for family in a.families:
        for compiled in (False, True):
            torch.manual_seed(0)
            model, flops_fn = build(family, a.size, a.vocab)
            model = model.to(device).train()
            if compiled:
                model.compile(backend="eager" if a.dry_run else "inductor")
            opt = build_optimizer(model, "adamw", 1e-4, 0.01, (0.9, 0.999), 1e-6, fused=True)
            fpt = flops_fn(model.config, a.seq, masked)
            for layout, batch in feeds.items():
                fn = step_fn(model, opt, batch, device, with_nsp=family == "bert")
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                times = [timed_step(fn, device) for _ in range(a.warmup + a.steps)][a.warmup :]
                rate = real / statistics.median(times)
                rows.append(
                    {
                        "family": family,
                        "layout": layout,
                        "compiled": compiled,
                        "rows": int(batch["input_ids"].shape[0]),
                        "tokens_per_s": rate,
                        "tflops": rate * fpt / 1e12,
                        "peak_gib": torch.cuda.max_memory_allocated() / 2**30
                        if device.type == "cuda"
                        else float("nan"),
                    }
                )
                print(
                    f"{family:6s} {layout:6s} compiled={compiled!s:5s} {rate:12.0f} real tokens/s",
                    flush=True,
                )
            del model, opt
    for r in rows:
        r["padding"] = padding
    return rows


def repro(project: Path, env: dict, args: list[str], what: str) -> str:
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - t
    if out.returncode:
        return f"FAILED ({took:.0f} s): {out.stdout[-400:]} {out.stderr[-800:]}"
    used = "GPU" if "GPU available: True" in out.stdout + out.stderr else "unclear device"
    return f"ran in {took:.0f} s ({what}; {used})"


def dvc_on_gpu(dry_run: bool, project: Path | None = None) -> str:
    """One stage of the tiny DAG with pretrain.accelerator: gpu, in a clean clone; or, with
    ``project`` (a tiny-preset checkout whose data stages were built on a machine that has
    the dataset mirror), ``dvc repro --single-item pretrain@bert`` there."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    if dry_run:
        return "not run in --dry-run (the DAG itself is tested by tests/test_pipeline_dvc.py)"
    if project is not None:
        what = "pretrain@bert alone, its data stages built on a CPU machine"
        return repro(project, env, ["--single-item", "pretrain@bert"], what)
    mirror = Path(os.environ.get("BERTPIPE_DATA_MIRROR", REPO.parent / "shared" / "data"))
    if not (mirror / "MANIFEST.md").exists():
        return f"not run: no dataset mirror at {mirror} (set BERTPIPE_DATA_MIRROR)"
    env["BERTPIPE_DATA_MIRROR"] = str(mirror)
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "p"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        sets = ["pretrain.accelerator=gpu", "pretrain.precision=bf16-mixed"]
        cmd = [
            str(bin_dir / "bertpipe"),
            "preset",
            "tiny",
            *(x for s in sets for x in ("--set", s)),
        ]
        subprocess.run(cmd, cwd=clone, env=env, check=True, capture_output=True)
        return repro(
            clone, env, ["pretrain@bert"], "corpus, tokenizer, pretrain_data, pretrain@bert"
        )


def table(rows: list[dict], ceiling: float, a, device, dvc: str) -> str:
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (dry run)"
    lines = [
        "",
        f"## GPU check, {datetime.date.today()}: {name}",
        "",
        "```bash",
        "python " + " ".join(["bench/gpu_check.py", *sys.argv[1:]]),
        "```",
        "",
        f"BERT-{a.size} shape, seq {a.seq}, {a.batch} instances a step, lengths uniform in "
        f"[{max(4, a.seq // 8)}, {a.seq}] ({100 * rows[0]['padding']:.0f}% of the padded batch "
        f"is padding), bf16 autocast, fused AdamW; real tokens only. Measured bf16 matmul "
        f"ceiling: {ceiling / 1e12:.0f} TFLOP/s.",
        "",
        "| family | layout | compiled | rows | real tokens/s | TFLOP/s | MFU of "
        f"{a.peak_tflops:.0f} | of measured mm | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['layout']} | {'yes' if r['compiled'] else 'no'} | {r['rows']} "
            f"| {r['tokens_per_s']:,.0f} | {r['tflops']:.2f} "
            f"| {100 * r['tflops'] * 1e12 / (a.peak_tflops * 1e12):.1f}% "
            f"| {100 * r['tflops'] * 1e12 / ceiling:.1f}% | {r['peak_gib']:.1f} |"
        )
    lines += ["", f"`dvc repro` of the tiny DAG's pretrain@bert on the GPU: {dvc}", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, toy sizes, seconds")
    ap.add_argument("--size", default=None, help="BERT size name (default base; tiny in --dry-run)")
    ap.add_argument("--seq", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--families", nargs="+", default=["bert", "modern"])
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    ap.add_argument("--dvc-project", type=Path, default=None, help="a built tiny project")
    a = ap.parse_args()
    toy = {"size": "tiny", "seq": 32, "batch": 8, "steps": 2, "warmup": 1, "vocab": 1000}
    real = {"size": "base", "seq": 128, "batch": 256, "steps": 10, "warmup": 3}
    for key, value in (toy if a.dry_run else real).items():
        if key == "vocab" or getattr(a, key) is None:
            setattr(a, key, value)
    if not a.dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --dry-run to check the script on the CPU")
    device = torch.device("cpu" if a.dry_run else "cuda")
    torch._logging.set_logs(dynamo=logging.ERROR)  # graph-break notes; the table says what ran
    n = 256 if a.dry_run else 8192
    ceiling = matmul_ceiling(device, torch.bfloat16, n, n, n)
    rows = measure(a, device)
    dvc = dvc_on_gpu(a.dry_run, a.dvc_project)
    text = table(rows, ceiling, a, device, dvc)
    print(text)
    with open(a.out, "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
