"""Do two source trees give the same training outputs? The check behind a ``dvc commit -f``.

A change to training code that should not change results (logging, checkpoint timing,
a refactor) still changes the stages' code deps, so DVC wants the stages rerun. This
builds one project at the tiny preset (one fine-tuning run, fp32, deterministic; the
same settings as tests/test_reliability.py), runs the DAG up to ``finetune@rte`` with
the NEW tree, then ``pretrain`` and ``finetune@rte`` again from scratch with the OLD
tree on the same upstream outputs, and compares: weights tensor for tensor, predictions
byte for byte, metrics and curves but for throughput and timings.

    python bench/outputs_equal.py OLD_SRC NEW_SRC    # e.g. a worktree's src/ and src/

Prints one line per stage and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import MIRROR, copy_working_tree
from outputs import comparable_tiny_params, differences, snapshot

COMPARED = ("pretrain@bert", "finetune@rte")


def dvc(root: Path, src: Path, *args: str) -> None:
    """``dvc ARGS`` through the tree's own ``bertpipe.dvc_runner`` (the stages import that tree)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(src),
        "OMP_NUM_THREADS": "1",
        "BERTPIPE_DATA_MIRROR": str(MIRROR),
        # The stages' `python` is this interpreter (the old tree's runner may not set it).
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run(
        [sys.executable, "-m", "bertpipe.dvc_runner", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"dvc {' '.join(args)} with {src} failed:\n{out.stderr[-3000:]}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old_src", type=Path)
    p.add_argument("new_src", type=Path)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_working_tree(Path(tmp) / "project")
        (root / "params.yaml").write_text(yaml.safe_dump(comparable_tiny_params()))
        dvc(root, a.new_src.resolve(), "repro", "finetune@rte")
        new = {s: snapshot(root, s) for s in COMPARED}
        for work in ("checkpoints/pretrain", "checkpoints/finetune"):
            shutil.rmtree(root / work)
        for stage in COMPARED:
            dvc(root, a.old_src.resolve(), "repro", "--single-item", "--force", stage)
        bad = 0
        for stage in COMPARED:
            diff = differences(snapshot(root, stage), new[stage])
            bad += bool(diff)
            n = len(new[stage]["tensors"])
            print(f"{stage}: {'DIFFERENT: ' + '; '.join(diff) if diff else 'equal'} ({n} tensors)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
