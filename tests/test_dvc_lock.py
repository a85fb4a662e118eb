"""dvc.lock survives kills: DVC's in-place rewrite made atomic, and a guard that restores a damaged lock.

DVC 3.67 truncates ``dvc.lock`` and then writes it; a kill in between loses it. The
first test shows that with DVC's own writer and that ``bertpipe.dvc_runner``'s writer
leaves the old lock whole; the others kill a real ``dvc repro`` at random moments and
check the lock after every kill, and check the guard's repairs.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from bertpipe.dvc_runner import LockGuard, command, environment, lock_problem

pytestmark = pytest.mark.slow

WRITER = textwrap.dedent("""
    import os, sys, time
    from dvc.utils.serialize import _yaml
    if sys.argv[1] == "atomic":
        from bertpipe.dvc_runner import install_atomic_writes
        install_atomic_writes()
    def slow_dump(data, stream):
        stream.write("schema: '2.0'\\nstages:\\n")
        stream.flush()
        os.fsync(stream.fileno())
        print("WRITING", flush=True)
        time.sleep(60)
    _yaml._dump = slow_dump
    _yaml.dump_yaml("dvc.lock", {"schema": "2.0", "stages": {}})
""")

LOCK = "schema: '2.0'\nstages:\n  a:\n    cmd: echo a\n  b:\n    cmd: echo b\n"


@pytest.mark.parametrize("writer,survives", [("dvc", False), ("atomic", True)])
def test_a_kill_while_the_lock_is_written(tmp_path, writer, survives):
    (tmp_path / "dvc.lock").write_text(LOCK)
    (tmp_path / "writer.py").write_text(WRITER)
    proc = subprocess.Popen(
        [sys.executable, "writer.py", writer],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        env=environment(),
    )
    assert proc.stdout.readline().strip() == "WRITING"
    proc.kill()
    proc.wait()
    after = (tmp_path / "dvc.lock").read_text()
    if survives:
        assert after == LOCK  # the old lock, whole; the new one was never renamed over it
    else:
        assert after == "schema: '2.0'\nstages:\n"  # DVC's own writer: both stages gone
        assert yaml.safe_load(after)["stages"] is None


# Each stage's output carries the seed, so a new seed makes every stage out of date.
STAGE = (
    'python -c "import time, pathlib as p; time.sleep(0.6); '
    "p.Path('{n}.txt').write_text('{n}' + p.Path('seed.txt').read_text())\""
)


def _project(tmp_path: Path, n: int = 8) -> Path:
    for cmd in (["git", "init", "-q"], command("init", "-q")):
        subprocess.run(cmd, cwd=tmp_path, check=True, env=environment())
    stages = {}
    for i in range(n):
        stages[f"s{i}"] = {
            "cmd": STAGE.format(n=f"s{i}"),
            "outs": [f"s{i}.txt"],
            "deps": [f"s{i - 1}.txt" if i else "seed.txt"],
        }
    (tmp_path / "seed.txt").write_text("0")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    return tmp_path


def test_random_kills_of_dvc_repro_never_leave_a_broken_or_shortened_lock(tmp_path):
    project = _project(tmp_path)
    rng = random.Random(0)
    done_before, kills = 0, 0
    for k in range(10):
        (project / "seed.txt").write_text(str(k))  # every stage is out of date again
        proc = subprocess.Popen(
            command("repro"),
            cwd=project,
            env=environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(rng.uniform(0.3, 5.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        (project / ".dvc/tmp/rwlock").unlink(missing_ok=True)  # a killed DVC leaves its locks
        (project / ".dvc/tmp/lock").unlink(missing_ok=True)
        assert lock_problem(project / "dvc.lock") is None
        done = (
            len((yaml.safe_load((project / "dvc.lock").read_text()) or {}).get("stages", {}))
            if (project / "dvc.lock").exists()
            else 0
        )
        assert done >= done_before, "a kill took away stages an earlier run had recorded"
        done_before = done
    assert kills >= 5
    print(
        f"dvc.lock kill test: {kills} kills of 10 runs, lock valid and no recorded stage lost "
        "after every one"
    )
    out = _dvc(project, "repro")
    assert "up to date" in _dvc(project, "status"), out
    assert len(yaml.safe_load((project / "dvc.lock").read_text())["stages"]) == 8


def _dvc(project: Path, *args: str) -> str:
    return subprocess.run(
        command(*args), cwd=project, env=environment(), capture_output=True, text=True, check=True
    ).stdout


def _repro(project: Path) -> None:
    with LockGuard(project, log=lambda m: None):
        subprocess.run(
            command("repro"), cwd=project, env=environment(), check=True, capture_output=True
        )


@pytest.mark.parametrize("damage", ["empty", "truncated", "shortened"])
def test_the_guard_restores_a_damaged_lock_before_dvc_reads_it(tmp_path, damage):
    project = _project(tmp_path, n=3)
    _repro(project)
    good = (project / "dvc.lock").read_text()
    lock = project / "dvc.lock"
    if damage == "empty":
        lock.write_text("")
    elif damage == "truncated":
        lock.write_text(good[: len(good) // 2] + "\n  - {bro")
    else:  # valid YAML, two stages gone: what a kill mid-write left with DVC's writer
        data = yaml.safe_load(good)
        data["stages"] = {"s0": data["stages"]["s0"]}
        lock.write_text(yaml.safe_dump(data))
    messages: list[str] = []
    with LockGuard(project, log=messages.append) as guard:
        assert lock.read_text() == good
    assert guard.restored and "restored the copy" in messages[0] and "dvc.lock" in messages[0]
    assert "up to date" in _dvc(project, "status")


def test_without_a_copy_the_guard_says_how_to_recover(tmp_path):
    project = _project(tmp_path, n=1)
    (project / "dvc.lock").write_text("stages: [")
    messages: list[str] = []
    LockGuard(project, log=messages.append).check("before")
    assert "no valid copy" in messages[0] and "git checkout -- dvc.lock" in messages[0]
