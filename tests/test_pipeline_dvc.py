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


def sh(args, cwd, check=True, env_extra=None, **kw):
    env = {**os.environ, **(env_extra or {})}
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


def _flow(project, tmp):
    env = {"PREFECT_HOME": str(tmp / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "OMP_NUM_THREADS": "1"}
    result = tmp / "flow_result.json"
    sh([sys.executable, "-m", "flows.pipeline", "--preset", "tiny", "--result", str(result)], project,
       env_extra=env)
    return json.loads(result.read_text())


def test_flow_runs_tiny_then_skips_everything_then_dvc_noop_and_selective(project, tmp_path):
    """The Prefect flow runs the whole tiny DAG (temporary local server); a second flow run
    finds nothing changed; plain DVC agrees; a param change reruns only what depends on it."""
    first = _flow(project, tmp_path)
    ran = {r["stage"] for r in first["stages"] if r["ran"]}
    assert {"corpus", "tokenizer", "pretrain_data", "pretrain", "evaluate"} <= ran
    assert {f"finetune@{t}" for t in RAN + SKIPPED} <= ran
    assert all(p["promoted"] for p in first["promoted"]) and len(first["promoted"]) == 1 + len(RAN)
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["tokenizer"]["params"]["params.yaml"]["tokenizer"]["vocab_size"] == 2000
    stats = json.loads((project / "metrics/pretrain_data_stats.json").read_text())
    assert stats["train"]["instances"] > 1000
    assert (project / "models/tokenizer/tokenizer.json").exists()
    _check_finetune_and_report(project, first["mlflow_run_id"])

    start = time.monotonic()
    second = _flow(project, tmp_path)
    flow_s = time.monotonic() - start
    assert not any(r["ran"] for r in second["stages"]) and second["promoted"] == []
    print(f"second flow run (nothing changed), server start included: {flow_s:.1f} s")

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


def _check_finetune_and_report(project, run_id):
    """Every task with training data in the mirror ran from both inits; the rest are skipped notes."""
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
    parent = client.get_run(run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["bertpipe.stage"] == "pipeline"
    assert "report" in {a.path for a in client.list_artifacts(run_id)}
    assert parent.data.metrics["glue_average/pretrained"] == metrics["glue_average"]["pretrained"]
    nested = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'", max_results=200)
    stages = [r.data.tags["bertpipe.stage"] for r in nested]
    assert stages.count("finetune") == len(RAN) * 2 * 2 and stages.count("pretrain") == 1
    assert all(r.data.metrics for r in nested)
    # Registered models, each with the champion alias on its first version.
    for name in ["bertpipe-pretrained", *(f"bertpipe-{t}" for t in RAN)]:
        assert client.get_model_version_by_alias(name, "champion").version == "1"


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
