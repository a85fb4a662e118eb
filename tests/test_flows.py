"""Prefect tasks around DVC stages: skip unchanged, retry transient failures, fail fast otherwise.

A toy DVC project (no ML) whose stage command fails the way a real stage would:
once with an I/O error (retried, then the run completes), or with a bad-input
error (no retry; the stage's own message surfaces).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

STAGE = textwrap.dedent("""
    import pathlib, sys
    mode, marker = sys.argv[1], pathlib.Path("attempts")
    n = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(n))
    if mode == "transient" and n == 1:
        raise OSError("[Errno 5] Input/output error: reading shard-00003.txt")
    if mode == "bad":
        raise ValueError("data/in.csv:7: label 'meh' is not in the declared set")
    pathlib.Path("out.txt").write_text(f"done after {n} attempt(s)\\n")
""")


@pytest.fixture(scope="module", autouse=True)
def prefect_env(tmp_path_factory):
    """Prefect's test harness: a temporary server for this module, stopped at its end (not at
    interpreter exit, where its goodbye would be logged to a closed stream after the summary)."""
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect")
    os.environ.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
    )
    os.environ.pop("PREFECT_API_URL", None)
    sys.path.insert(0, str(REPO))
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _project(tmp_path: Path, mode: str) -> Path:
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, env=env)
    (tmp_path / "stage.py").write_text(STAGE)
    (tmp_path / "dvc.yaml").write_text(
        f"stages:\n  work:\n    cmd: python stage.py {mode}\n    deps: [stage.py]\n    outs: [out.txt]\n"
    )
    os.environ["PATH"] = env["PATH"]
    return tmp_path


def test_transient_failure_is_retried_then_unchanged_stage_is_skipped(tmp_path):
    from prefect import flow

    from flows.stage_tasks import run_stage

    project = _project(tmp_path, "transient")

    @flow
    def once():
        state = run_stage("work", str(project), return_state=True)
        return state.name, state.result()

    assert once() == ("Completed", {"stage": "work", "ran": True})
    assert (project / "attempts").read_text() == "2" and (project / "out.txt").exists()
    # DVC: nothing changed; the task's state says so in the Prefect UI
    assert once() == ("Skipped", {"stage": "work", "ran": False})
    assert (project / "attempts").read_text() == "2"


def test_deterministic_failure_fails_fast_with_the_stage_message(tmp_path):
    from prefect import flow

    from flows.stage_tasks import StageFailed, run_stage_concurrently

    project = _project(tmp_path, "bad")

    @flow
    def once():
        return run_stage_concurrently("work", str(project))

    start = time.monotonic()
    with pytest.raises(StageFailed, match=r"(?s)deterministic.*data/in.csv:7: label 'meh'"):
        once()
    assert (project / "attempts").read_text() == "1"  # no retry
    assert time.monotonic() - start < 60


def test_failure_classification():
    from flows.stage_tasks import classify

    assert classify(-9, "")  # killed: preemption, OOM killer
    assert classify(1, "Traceback ...\nConnectionResetError: [Errno 104] reset by peer")
    assert not classify(
        1, "Traceback ...\nbertpipe.config.ConfigError: params.yaml: corpus.x: unknown key"
    )
    assert not classify(1, "Traceback ...\nValueError: bad")


DAG_STAGE = textwrap.dedent("""
    import json, pathlib, sys, time
    name, out = sys.argv[1], pathlib.Path(sys.argv[2])
    running, started = pathlib.Path("running"), pathlib.Path("started")
    running.mkdir(exist_ok=True)
    started.mkdir(exist_ok=True)
    (running / name).touch()
    (started / name).touch()
    start, peak = time.time(), len(list(running.iterdir()))
    wait = pathlib.Path("wait_for.txt").read_text() if pathlib.Path("wait_for.txt").exists() else ""
    if name.startswith("b") and wait:
        # No sleeps to guess at: a b stage holds until a sibling has started ("peer", the
        # fan-out test) or until the test releases it ("release"), whatever the machine's load.
        deadline = time.time() + 120
        while time.time() < deadline:
            if wait == "peer" and len(list(started.iterdir())) - 1 >= 2:  # "a" started too
                time.sleep(1.0)  # held while running: a third stage would be seen here
                break
            if wait == "release" and pathlib.Path("release").exists():
                break
            time.sleep(0.05)
        peak = max(peak, len(list(running.iterdir())))
    (running / name).unlink()
    out.write_text(json.dumps({"stage": name, "start": start, "end": time.time(), "peak": peak}))
""")


def _dag_project(tmp_path: Path, wait_for: str = "") -> Path:
    project = _project(tmp_path, "ok")
    (project / "dag.py").write_text(DAG_STAGE)
    if wait_for:
        (project / "wait_for.txt").write_text(wait_for)
    (project / "params.yaml").write_text("items: [x, y, z]\n")
    (project / "dvc.yaml").write_text(
        textwrap.dedent("""
        stages:
          a:
            cmd: python dag.py a a.json
            deps: [dag.py]
            outs: [a.json]
          b:
            foreach: ${items}
            do:
              cmd: python dag.py b@${item} b_${item}.json
              deps: [a.json]
              outs:
                - b_${item}.json
          c:
            cmd: python dag.py c c.json
            deps: [b_x.json, b_y.json, b_z.json]
            outs: [c.json]
    """)
    )
    return project


def test_the_flow_runs_the_dag_dvc_yaml_describes_with_a_bounded_fan_out(tmp_path):
    from prefect import flow

    from flows.dag import stage_generations
    from flows.pipeline import run_dag

    project = _dag_project(tmp_path, wait_for="peer")
    assert stage_generations(str(project)) == [["a"], ["b@x", "b@y", "b@z"], ["c"]]

    @flow
    def dag(limit: int):
        return run_dag(str(project), {}, limit, [])

    results = dag(2)
    assert [r["stage"] for r in results] == ["a", "b@x", "b@y", "b@z", "c"] and all(
        r["ran"] for r in results
    )
    times = {
        r["stage"]: json.loads((project / f"{r['stage'].replace('@', '_')}.json").read_text())
        for r in results
    }
    assert times["a"]["end"] <= min(times[f"b@{i}"]["start"] for i in "xyz")
    assert max(times[f"b@{i}"]["end"] for i in "xyz") <= times["c"]["start"]
    # Each b stage counted the stages running beside it: two at once (they waited for each
    # other, so a flow that ran them one by one would show 1), never three.
    assert max(times[f"b@{i}"]["peak"] for i in "xyz") == 2, times
    assert not any(r["ran"] for r in dag(2))  # DVC: nothing changed
    # A stage added to dvc.yaml runs with no flow edit.
    with open(project / "dvc.yaml", "a") as f:
        f.write("  d:\n    cmd: python dag.py d d.json\n    deps: [c.json]\n    outs: [d.json]\n")
    assert [(r["stage"], r["ran"]) for r in dag(1)][-1] == ("d", True)


def test_a_concurrent_dvc_repro_of_a_running_fan_out_stage_is_refused(tmp_path, monkeypatch):
    """The flow runs fan-out commands outside DVC's repository lock but inside its rwlock."""
    import threading

    from prefect import flow

    from bertpipe.dvc_runner import command, environment
    from flows.stage_tasks import run_stage_concurrently

    project = _dag_project(tmp_path, wait_for="release")  # b@x holds the lock until released
    subprocess.run(
        command("repro", "a"), cwd=project, check=True, env=environment(), capture_output=True
    )
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no venv on PATH: the flow must not need one

    @flow
    def one():
        return run_stage_concurrently("b@x", str(project), return_state=True).result()

    (project / "b_x.json").write_text("a previous run's output")
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(one()))
    worker.start()
    deadline = time.monotonic() + 60
    while not (project / "running/b@x").exists():  # the stage's command has started
        assert time.monotonic() < deadline, "the flow task never started the stage"
        time.sleep(0.05)
    assert "b_x.json" in (project / ".dvc/tmp/rwlock").read_text()
    assert not (project / "b_x.json").exists()  # removed before the command, as dvc repro does
    other = subprocess.run(
        command("repro", "--single-item", "b@x"),
        cwd=project,
        env=environment(),
        capture_output=True,
        text=True,
    )
    (project / "release").touch()
    worker.join()
    assert other.returncode != 0 and "is busy" in other.stdout + other.stderr
    assert "bertpipe flow: b@x" in other.stdout + other.stderr
    assert result == {"stage": "b@x", "ran": True}
    assert "b@x" in yaml_load(project / "dvc.lock")["stages"]


READER_STAGE = textwrap.dedent("""
    import pathlib, sys, time, yaml
    end = time.time() + 1.5
    while time.time() < end:  # what a stage's MLflow tags did: read dvc.lock while siblings commit
        text = pathlib.Path("dvc.lock").read_text() if pathlib.Path("dvc.lock").exists() else ""
        yaml.safe_load(text)
    pathlib.Path(sys.argv[1]).write_text(pathlib.Path("seed.txt").read_text())
""")


def test_the_fan_out_never_shows_a_stage_a_half_written_lock(tmp_path):
    """Five rounds of six concurrent stages that parse dvc.lock while their siblings' `dvc commit`
    rewrite it (a scheduled run once failed with a YAML error here): every reader parses."""
    from prefect import flow

    from flows.pipeline import run_dag

    project = _project(tmp_path, "ok")
    (project / "reader.py").write_text(READER_STAGE)
    (project / "seed.txt").write_text("0")
    (project / "params.yaml").write_text("items: [a, b, c, d, e, f]\n")
    (project / "dvc.yaml").write_text(
        textwrap.dedent("""
        stages:
          fan:
            foreach: ${items}
            do:
              cmd: python reader.py out_${item}.txt
              deps: [reader.py, seed.txt]
              outs:
                - out_${item}.txt
    """)
    )

    @flow
    def fan_out():
        return run_dag(str(project), {}, 3, [])

    for k in range(5):
        (project / "seed.txt").write_text(str(k))
        results = fan_out()
        assert all(r["ran"] for r in results) and len(results) == 6
    assert len(yaml_load(project / "dvc.lock")["stages"]) == 6


def yaml_load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


@pytest.mark.minutes
def test_sweep_runs_a_grid_as_dvc_experiments_and_reports_the_best(tmp_path):
    from flows.sweep import sweep

    project = _project(tmp_path, "ok")
    (project / "params.yaml").write_text("x: 1\n")
    (project / "stage.py").write_text(
        "import json, yaml\nx = yaml.safe_load(open('params.yaml'))['x']\n"
        "json.dump({'score': {'neg_sq': -(x - 3) ** 2}}, open('metrics.json', 'w'))\n"
    )
    (project / "dvc.yaml").write_text(
        "stages:\n  work:\n    cmd: python stage.py\n    deps: [stage.py]\n"
        "    params: [x]\n    metrics: [{metrics.json: {cache: false}}]\n"
    )
    for cmd in (
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "toy"],
    ):
        subprocess.run(cmd, cwd=project, check=True)
    out = sweep({"x": [1, 3]}, "metrics.json:score.neg_sq", workdir=str(project))
    assert out["overrides"] == ["x=3"] and sorted(out["scores"].values()) == [-4.0, 0.0]
    assert (project / "params.yaml").read_text() == "x: 1\n"  # the workspace is untouched
