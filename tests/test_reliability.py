"""Reliability: SIGKILL the pipeline at random moments, rerun, and compare with a run never killed.

One project at the tiny preset (one fine-tuning task, one init, one seed; fp32,
deterministic). An uninterrupted run of ``corpus``, ``tokenizer``, ``pretrain_data``,
``pretrain@bert`` and ``finetune@rte`` is the reference and times each stage. Then, for each
of ``corpus``, ``pretrain_data``, ``pretrain@bert`` and ``finetune@rte``, the stage is run again
from scratch (``bertpipe run --single-item --force``: DVC first deletes its outputs, the
training stages find no checkpoint or cached run) and its whole process group is
SIGKILLed at a moment drawn uniformly over the stage's reference duration; then the
same command again, as an operator would. (A plain ``bertpipe run STAGE`` would not
retrain: with the stage's dvc.lock entry unchanged, DVC checks its outputs out of the
cache.) After every rerun:

- outputs identical to the reference: corpus and pretrain_data byte for byte, the
  pretrained and fine-tuned weights tensor for tensor, predictions byte for byte, metrics
  equal but for throughput and timings;
- ``dvc.lock`` valid and complete: every stage's entry equal to the reference's (but for
  the hashes of the files that hold timings, compared above without them);
- MLflow history clean: the run that made the model has every metric at exactly the
  reference run's steps, each once; runs the kill left behind are ended as KILLED.

The tokenizer
stage is not killed: the WordPiece trainer of ``tokenizers`` is not deterministic
(huggingface/tokenizers#1794), so its rerun could not be compared byte for byte.

Kills per stage: ``BERTPIPE_KILLS_PER_STAGE`` (default 2); the draw is seeded by
``BERTPIPE_KILL_SEED`` (printed, so a failure can be replayed).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bertpipe.dvc_runner import lock_problem
from conftest import copy_working_tree
from history import history_problems, metric_steps
from outputs import comparable_tiny_params, differences, lock_entries, snapshot

pytestmark = [pytest.mark.minutes, pytest.mark.mirror, pytest.mark.reliability]

KILLED = ("corpus", "pretrain_data", "pretrain@bert", "finetune@rte")
STAGES = ("corpus", "tokenizer", "pretrain_data", "pretrain@bert", "finetune@rte")
WORK = {"pretrain@bert": "checkpoints/pretrain/bert", "finetune@rte": "checkpoints/finetune/rte"}
RUN_ID = {
    "pretrain@bert": "checkpoints/pretrain/bert/mlflow_run_id",
    "finetune@rte": "checkpoints/finetune/rte/pretrained/seed1/mlflow_run_id",
}


def _env() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the project's own mlflow.db
    return env


def bertpipe(root: Path, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bertpipe.cli", *args],
        cwd=root,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kw,
    )


def finish(root: Path, *args: str) -> str:
    proc = bertpipe(root, *args)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"bertpipe {' '.join(args)} failed:\n{out[-4000:]}"
    return out


def _wait_until_gone(group: int, timeout: float = 30) -> None:
    """Until the killed group's last process is reaped (DVC takes a live PID's rwlock entry,
    a zombie's included, as held; an operator's rerun comes seconds later)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process group {group} still there {timeout}s after SIGKILL")


def mlflow_history(root: Path, stage: str, reference: dict | None = None):
    """(metric steps of the run that made the stage's model, status of every other run)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    run_id = (root / RUN_ID[stage]).read_text().strip()
    exp = client.get_experiment_by_name("bertpipe")
    tag = {"pretrain@bert": "pretrain", "finetune@rte": "finetune"}[stage]
    others = [
        r.info.status
        for r in client.search_runs(
            [exp.experiment_id], filter_string=f"tags.`bertpipe.stage` = '{tag}'"
        )
        if r.info.run_id != run_id and (reference is None or r.info.run_id not in reference)
    ]
    return metric_steps(client, run_id), others, run_id


# ------------------------------------------------------------------------------ the suite


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = copy_working_tree(tmp_path_factory.mktemp("reliability") / "bertpipe")
    (root / "params.yaml").write_text(yaml.safe_dump(comparable_tiny_params(), sort_keys=False))
    return root


def test_random_kills_then_reruns_match_an_uninterrupted_run(project):
    root = project
    seconds, reference = {}, {}
    for stage in STAGES:
        started = time.monotonic()
        finish(root, "run", "--single-item", stage)
        seconds[stage] = time.monotonic() - started
    for stage in KILLED:
        reference[stage] = snapshot(root, stage)
    ref_lock = lock_entries(root)
    ref_history = {s: mlflow_history(root, s) for s in RUN_ID}
    ref_runs = {h[2] for h in ref_history.values()}

    seed = int(os.environ.get("BERTPIPE_KILL_SEED", random.SystemRandom().randrange(10**6)))
    per_stage = int(os.environ.get("BERTPIPE_KILLS_PER_STAGE", "2"))
    rng = random.Random(seed)
    rows, failures = [], []
    for stage in KILLED:
        for _ in range(per_stage):
            # From scratch: no checkpoint to resume, no finished fine-tuning run to reuse.
            if stage in WORK:
                shutil.rmtree(root / WORK[stage], ignore_errors=True)
            at = rng.uniform(0, seconds[stage])
            proc = bertpipe(root, "run", "--single-item", "--force", stage)
            try:
                proc.wait(timeout=at)
                ended_first = True
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                _wait_until_gone(proc.pid)
                ended_first = False
            if proc.stdout:
                proc.stdout.close()
            finish(root, "run", "--single-item", "--force", stage)  # the same command again

            problems = differences(reference[stage], snapshot(root, stage))
            identical = not problems
            lock_ok = lock_problem(root / "dvc.lock") is None and lock_entries(root) == ref_lock
            history_ok = None
            if stage in RUN_ID:
                steps, others, _ = mlflow_history(root, stage, ref_runs)
                history = history_problems(ref_history[stage][0], steps)
                left_running = [s for s in others if s == "RUNNING"]
                history_ok = not history and not left_running
                problems += history + [f"{len(left_running)} run(s) left RUNNING"] * bool(
                    left_running
                )
            if not lock_ok:
                problems.append("dvc.lock invalid or different from the reference")
            row = {
                "stage": stage,
                "kill_at_s": round(at, 2),
                "stage_s": round(seconds[stage], 2),
                "finished_before_the_kill": ended_first,
                "identical": identical,
                "lock_intact": lock_ok,
                "history_clean": history_ok,
            }
            rows.append(row)
            if problems:
                failures.append((row, problems))
            # The runs of this trial are done with: only the next trial's count.
            ref_runs |= {
                (root / RUN_ID[s]).read_text().strip()
                for s in RUN_ID
                if (root / RUN_ID[s]).exists()
            }

    kills = sum(not r["finished_before_the_kill"] for r in rows)
    with_history = [r for r in rows if r["history_clean"] is not None]
    print(f"\nreliability (seed {seed}):")
    for r in rows:
        print("  " + json.dumps(r))
    print(
        f"reliability: {len(rows)} trials, {kills} killed before finishing; identical "
        f"{sum(r['identical'] for r in rows)}/{len(rows)}, lock intact "
        f"{sum(r['lock_intact'] for r in rows)}/{len(rows)}, history clean "
        f"{sum(bool(r['history_clean']) for r in with_history)}/{len(with_history)}"
    )
    assert not failures, f"seed {seed}: {failures}"
    assert kills >= len(KILLED) * per_stage // 2, "most draws should land inside the run"
