"""The DVC DAG end to end at the tiny preset: repro, no-op rerun, selective rerun, atomic outputs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow


def sh(args, cwd, check=True, **kw):
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    env.pop("MLFLOW_TRACKING_URI", None)  # the project's own mlflow.db
    out = subprocess.run(args, cwd=cwd, env=env, text=True, capture_output=True, **kw)
    if check and out.returncode:
        raise AssertionError(f"{args} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A fresh git clone of the working tree's tracked files, as a user would have."""
    dst = tmp_path_factory.mktemp("clone") / "bertpipe"
    files = sh(["git", "ls-files", "--cached", "--others", "--exclude-standard"], REPO).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        sh(cmd, dst)
    return dst


def test_repro_tiny_then_noop_then_selective(project):
    sh([sys.executable, "-m", "bertpipe.cli", "preset", "tiny"], project)
    out = sh([sys.executable, "-m", "bertpipe.cli", "run"], project)
    for stage in ("corpus", "tokenizer", "pretrain_data"):
        assert f"Running stage '{stage}'" in out.stdout
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["tokenizer"]["params"]["params.yaml"]["tokenizer"]["vocab_size"] == 2000
    stats = json.loads((project / "metrics/pretrain_data_stats.json").read_text())
    assert stats["train"]["instances"] > 1000
    assert (project / "models/tokenizer/tokenizer.json").exists()
    _check_finetune_and_report(project, out.stdout)

    start = time.monotonic()
    out = sh([sys.executable, "-m", "dvc", "repro"], project)
    noop_s = time.monotonic() - start
    assert "Data and pipelines are up to date" in out.stdout
    print(f"no-op dvc repro: {noop_s:.2f} s")

    sh(["git", "add", "-A"], project)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"], project)
    out = sh([sys.executable, "-m", "dvc", "exp", "run", "-S", "tokenizer.vocab_size=1500", "pretrain_data"],
             project)
    assert "Stage 'corpus' didn't change, skipping" in out.stdout
    assert "Running stage 'tokenizer'" in out.stdout and "Running stage 'pretrain_data'" in out.stdout
    tok = json.loads((project / "metrics/tokenizer_stats.json").read_text())
    assert tok["vocab_size"] == 1500


RAN = ("cola", "sst2", "mrpc", "stsb", "rte", "wnli", "squad")  # train + dev in the mirror
SKIPPED = ("qqp", "mnli", "qnli", "squad_v2")  # no training data in the mirror


def _check_finetune_and_report(project, stdout):
    """Every task with training data in the mirror ran from both inits; the rest are skipped notes."""
    for task in RAN + SKIPPED:
        assert f"Running stage 'finetune@{task}'" in stdout
    assert "Running stage 'evaluate'" in stdout
    for task in RAN:
        summary = json.loads((project / f"metrics/finetune/{task}.json").read_text())
        for init in ("pretrained", "scratch"):
            runs = summary["results"][init]["runs"]
            assert [r["seed"] for r in runs] == [1, 2]
            stats = summary["results"][init]["summary"][summary["selection_metric"]]
            assert stats["min"] <= stats["median"] <= stats["max"]
        assert (project / f"results/finetune/{task}/model/model.safetensors").exists()
        assert (project / f"results/finetune/{task}/predictions/scratch/seed2.json").exists()
    for task in SKIPPED:
        assert "is not in the mirror" in json.loads((project / f"metrics/finetune/{task}.json").read_text())["skipped"]
    report = (project / "reports/report.md").read_text()
    for task in RAN:
        assert f"| {task} |" in report
    assert "## Skipped tasks" in report and "**mnli**" in report and "GLUE average" in report
    assert "BERT-Tiny (L2/H128)" in report and "Turc et al. (2019)" in report
    assert {p.name for p in (project / "reports/plots").iterdir()} == {"finetune_scores.png", "pretrain_curves.png"}
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert set(metrics["tasks"]) == set(RAN) and set(metrics["skipped"]) == set(SKIPPED)
    # DVC sees the declared metrics (what `dvc metrics diff` compares).
    shown = json.loads(sh([sys.executable, "-m", "dvc", "metrics", "show", "--json"], project).stdout)
    files = next(iter(shown.values()))["data"]
    assert "reports/metrics.json" in files and "metrics/finetune/cola.json" in files
    # Plots render offline (vl-convert), per revision for comparisons.
    out = sh([sys.executable, "-m", "bertpipe.cli", "plots", "--out", "dvcplots"], project).stdout
    assert "pretraining_loss.png" in out and (project / "dvcplots/index.html").exists()
    assert (project / "dvcplots/pretraining_loss.png").read_bytes()[:4] == b"\x89PNG"
    # MLflow: one pipeline run with the report, a nested run per task, init and seed.
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bertpipe")
    parent = client.search_runs([exp.experiment_id], "tags.`bertpipe.stage` = 'pipeline'")
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert "report" in {a.path for a in client.list_artifacts(parent[0].info.run_id)}
    nested = client.search_runs([exp.experiment_id],
                                f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'", max_results=200)
    assert len(nested) == len(RAN) * 2 * 2
    assert all(r.data.metrics for r in nested)


def test_bad_params_fail_the_stage_with_the_message(project):
    params = project / "params.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("  min_doc_words:", "  min_doc_wrds:"))
        out = sh([sys.executable, "-m", "dvc", "repro", "corpus"], project, check=False)
        assert out.returncode != 0
        assert "corpus.min_doc_wrds: unknown key. Did you mean 'min_doc_words'?" in out.stderr + out.stdout
    finally:
        params.write_text(original)
    # DVC removed the stage's outputs before running it; its cache still has them, so
    # nothing is recomputed to get them back.
    assert not (project / "data/corpus").exists()
    sh([sys.executable, "-m", "dvc", "checkout"], project)
    out = sh([sys.executable, "-m", "dvc", "repro"], project).stdout
    assert "Running stage" not in out and (project / "data/corpus/train").is_dir()


def test_killed_stage_leaves_no_partial_output(project, tmp_path):
    """SIGKILL mid-stage: the final folder keeps the last complete output, a rerun completes."""
    before = sorted(p.name for p in (project / "data/pretrain/train").iterdir())
    proc = subprocess.Popen(
        [sys.executable, "-m", "bertpipe.stages.pretrain_data", "--corpus", "data/corpus",
         "--tokenizer", "models/tokenizer", "--out", "data/pretrain", "--stats", str(tmp_path / "s.json")],
        cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    partial = project / "data/.pretrain.partial"
    deadline = time.monotonic() + 60
    while not partial.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert sorted(p.name for p in (project / "data/pretrain/train").iterdir()) == before
    assert not (tmp_path / "s.json").exists()
    sh([sys.executable, "-m", "bertpipe.stages.pretrain_data", "--corpus", "data/corpus",
        "--tokenizer", "models/tokenizer", "--out", "data/pretrain", "--stats", str(tmp_path / "s.json")],
       project)
    assert not partial.exists() and (tmp_path / "s.json").exists()
