"""Benchmark: the data half of the DAG (corpus, tokenizer, pretrain_data) on the whole mirror corpus.

Runs the three stage entry points, exactly as DVC runs them, in a scratch folder
with params from a preset (default ``base``: every pretraining text in the mirror,
about 273 M characters, vocab 30522, seq 128). For each stage it prints wall time
and peak resident memory summed over the stage's process tree (workers included),
then the totals as ratios against the acceptance budget (600 s, 4 GiB) and against
a reference measured in the same run: one plain pass that decompresses and parses
every source file (the I/O floor any corpus build pays).

    BERTPIPE_DATA_MIRROR=../shared/data .venv/bin/python bench/data_stages.py [--preset base]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import lzma
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bertpipe.config import load_params, preset_values, render_params
from bertpipe.data import catalog

BUDGET_S, BUDGET_RSS = 600.0, 4 * 1024**3


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_stage(args: list[str], cwd: Path) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=cwd)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(ps))
        time.sleep(0.2)
    if proc.returncode:
        raise SystemExit(f"stage {args[0]} failed with exit code {proc.returncode}")
    return time.perf_counter() - start, peak


def read_reference(params) -> tuple[float, int]:
    """Decompress and JSON-parse every mirror file the sources name, once."""
    start, chars = time.perf_counter(), 0
    root = catalog.mirror_root()
    for src in params.corpus.sources:
        spec = catalog.get_spec(src.dataset)
        for path in catalog.mirror_files(spec, "train", root):
            with lzma.open(path, "rt", encoding="utf-8") as f:
                for line in f:
                    chars += len(json.loads(line)["text"]) if spec.format == "jsonl" else len(line)
    return time.perf_counter() - start, chars


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="base")
    ap.add_argument("--keep", help="keep outputs in this folder instead of a temporary one")
    a = ap.parse_args()
    if catalog.mirror_root() is None:
        raise SystemExit("set BERTPIPE_DATA_MIRROR (e.g. ../shared/data)")
    work = Path(a.keep or tempfile.mkdtemp(prefix="bertpipe-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(render_params(preset_values(a.preset)))
    params = load_params(work / "params.yaml")

    ref_s, ref_chars = read_reference(params)
    print(f"reference: read + parse all source files: {ref_s:.1f} s, {ref_chars / 1e6:.1f} M chars")

    stages = [
        (
            "corpus",
            [
                "bertpipe.stages.corpus",
                "--out",
                "data/corpus",
                "--stats",
                "results/corpus_stats.json",
                "--metrics",
                "metrics/corpus.json",
            ],
        ),
        (
            "tokenizer",
            [
                "bertpipe.stages.tokenizer",
                "--corpus",
                "data/corpus",
                "--out",
                "models/tokenizer",
                "--stats",
                "results/tokenizer_stats.json",
                "--metrics",
                "metrics/tokenizer.json",
            ],
        ),
        (
            "pretrain_data",
            [
                "bertpipe.stages.pretrain_data",
                "--corpus",
                "data/corpus",
                "--tokenizer",
                "models/tokenizer",
                "--out",
                "data/pretrain",
                "--stats",
                "results/pretrain_data_stats.json",
                "--metrics",
                "metrics/pretrain_data.json",
            ],
        ),
    ]
    total_s, peak = 0.0, 0
    rows = []
    for name, args in stages:
        s, rss = run_stage(args, work)
        total_s += s
        peak = max(peak, rss)
        rows.append((name, s, rss))
    corpus = json.loads((work / "results/corpus_stats.json").read_text())["total"]
    pdata = json.loads((work / "results/pretrain_data_stats.json").read_text())

    print(
        f"\npreset {a.preset}: {corpus['characters'] / 1e6:.1f} M chars kept, "
        f"{corpus['documents']} documents, {pdata['train']['instances']} train instances, "
        f"{pdata['train']['tokens'] / 1e6:.1f} M tokens"
    )
    print(f"{'stage':15s} {'wall s':>8s} {'peak RSS GiB':>13s}")
    for name, s, rss in rows:
        print(f"{name:15s} {s:8.1f} {rss / 1024**3:13.2f}")
    print(f"{'total':15s} {total_s:8.1f} {peak / 1024**3:13.2f}")
    print(f"\ntime / budget (600 s):          {total_s / BUDGET_S:.2f}")
    print(f"peak RSS / budget (4 GiB):      {peak / BUDGET_RSS:.2f}")
    print(f"time / read-and-parse reference: {total_s / ref_s:.1f}x")
    print(f"outputs in {work}")
    print(f"cpu count {os.cpu_count()}")


if __name__ == "__main__":
    main()
