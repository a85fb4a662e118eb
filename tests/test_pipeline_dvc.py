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

    start = time.monotonic()
    out = sh([sys.executable, "-m", "dvc", "repro"], project)
    noop_s = time.monotonic() - start
    assert "Data and pipelines are up to date" in out.stdout
    print(f"no-op dvc repro: {noop_s:.2f} s")

    sh(["git", "add", "-A"], project)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"], project)
    out = sh([sys.executable, "-m", "dvc", "exp", "run", "-S", "tokenizer.vocab_size=1500"], project)
    assert "Stage 'corpus' didn't change, skipping" in out.stdout
    assert "Running stage 'tokenizer'" in out.stdout and "Running stage 'pretrain_data'" in out.stdout
    tok = json.loads((project / "metrics/tokenizer_stats.json").read_text())
    assert tok["vocab_size"] == 1500


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
