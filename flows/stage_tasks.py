"""Prefect tasks: thin wrappers that run DVC stages or call small library functions.

No ML logic here. A stage is run the way ``dvc repro`` would run it, so ``dvc.lock``
stays the single truth: ``run_stage`` reproduces one stage with ``dvc repro
--single-item`` (DVC skips it when nothing changed). DVC holds a repository lock
for the whole of a ``repro``, which would serialise the fine-tuning fan-out, so
``run_stage_concurrently`` asks DVC whether the stage changed and for its command,
runs the command outside the lock, then records the result with ``dvc commit``
(the lock is taken only for those short DVC calls). While the command runs it holds
DVC's own read/write lock on the stage's deps and outs (``dvc.rwlock``), so a
``dvc repro`` of the same stage started meanwhile is refused as "busy", as DVC
refuses two of its own. DVC runs through ``bertpipe.dvc_runner`` (this interpreter,
``dvc.lock`` written atomically), so no task or stage ever reads a half-written lock.

Failures are classified: a stage killed by a signal (preemption, OOM killer) or
one whose traceback ends in an I/O or network error is transient and retried with
backoff; anything else (a bad params key, a bad input file) is deterministic and
fails at once with the stage's own message.
"""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path
from typing import Any

from prefect import task
from prefect.tasks import exponential_backoff

from bertpipe.dvc_runner import command as dvc_command
from bertpipe.dvc_runner import environment

TRANSIENT_ERRORS = (
    "OSError",
    "IOError",
    "ConnectionError",
    "ConnectionResetError",
    "TimeoutError",
    "BrokenPipeError",
    "TransientStageError",
    "TrackingUnreachableError",
    "socket.timeout",
    "URLError",
    "HTTPError",
)
_DVC_LOCK = threading.Lock()  # one DVC call at a time from this process's task threads


class StageFailed(RuntimeError):
    """A stage that exited non-zero; ``transient`` says whether retrying can help."""

    def __init__(self, stage: str, returncode: int, tail: str, transient: bool):
        self.stage, self.returncode, self.transient = stage, returncode, transient
        kind = "transient" if transient else "deterministic"
        super().__init__(f"stage {stage!r} failed ({kind}, exit {returncode}):\n{tail}")


def classify(returncode: int, stderr: str) -> bool:
    """True when a failure is worth retrying."""
    if returncode < 0 or returncode in (137, 143):  # killed by a signal (directly or via a shell)
        return True
    last = next(
        (
            line
            for line in reversed(stderr.strip().splitlines())
            if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line)
        ),
        "",
    )
    return last.split(":", 1)[0].split(".")[-1] in {e.split(".")[-1] for e in TRANSIENT_ERRORS}


def retry_if_transient(task, task_run, state) -> bool:
    try:
        state.result()
    except StageFailed as e:
        return e.transient
    except Exception:
        return False
    return False


STAGE_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=5),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_if_transient,
}
"""Transient failures retry after about 5, 10, 20 s; deterministic ones do not retry."""


def run_command(
    cmd: list[str] | str, cwd: str, stage: str, env: dict | None = None, stdout_only: bool = False
) -> str:
    """The command's output (stdout + stderr; ``stdout_only`` for machine-read output such as
    ``--json``, which DVC's warnings on stderr would corrupt); StageFailed if it fails."""
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        shell=isinstance(cmd, str),
        capture_output=True,
        text=True,
        env=environment(env),
        check=False,
    )
    if proc.returncode:
        tail = "\n".join((proc.stdout + "\n" + proc.stderr).strip().splitlines()[-25:])
        raise StageFailed(stage, proc.returncode, tail, classify(proc.returncode, proc.stderr))
    return proc.stdout if stdout_only else proc.stdout + proc.stderr


def dvc(
    *args: str, cwd: str, stage: str, env: dict | None = None, stdout_only: bool = False
) -> str:
    with _DVC_LOCK:
        return run_command(dvc_command("--wait-for-lock", *args), cwd, stage, env, stdout_only)


def summary_lines(output: str, limit: int = 12) -> list[str]:
    """The stage's own INFO/WARNING lines (``bertpipe.*`` loggers), the last ``limit``."""
    lines = [
        line for line in output.splitlines() if re.search(r" (INFO|WARNING) bertpipe[\w.]*: ", line)
    ]
    return lines[-limit:]


def finished(stage: str, ran: bool, output: str = ""):
    """The task's final state: Completed with the stage's summary in the task log, or a
    Completed state named ``Skipped`` ("skipped (unchanged)") when DVC did not run it."""
    from prefect import get_run_logger
    from prefect.states import Completed

    result = {"stage": stage, "ran": ran}
    logger = get_run_logger()
    if not ran:
        logger.info("%s: skipped (unchanged): dvc.lock matches its deps and params", stage)
        return Completed(name="Skipped", message="skipped (unchanged)", data=result)
    for line in summary_lines(output):
        logger.info("%s", line.split(": ", 1)[-1] if " bertpipe" in line else line)
    return Completed(message="ran", data=result)


@task(**STAGE_RETRIES, task_run_name="{stage}")
def run_stage(stage: str, workdir: str = ".", env: dict | None = None):
    """``dvc repro --single-item STAGE``: ``{"stage", "ran"}`` (False when DVC skipped it)."""
    out = dvc("repro", "--single-item", stage, cwd=workdir, stage=stage, env=env)
    return finished(stage, f"Running stage '{stage}'" in out, out)


@task(**STAGE_RETRIES, task_run_name="{stage}")
def run_stage_concurrently(stage: str, workdir: str = ".", env: dict | None = None):
    """The same result as ``run_stage``, with the stage's command run outside DVC's lock."""
    status = dvc("status", stage, cwd=workdir, stage=stage)
    if "up to date" in status:
        return finished(stage, False)
    with _DVC_LOCK:  # DVC's rwlock file is not thread-safe: edit it under the thread lock
        from dvc.repo import Repo
        from dvc.rwlock import rwlock
        from dvc.stage import Stage

        with Repo(workdir) as repo:
            found = repo.stage.collect(f"{Path(workdir) / 'dvc.yaml'}:{stage}")[0]
            held = rwlock(
                repo.tmp_dir,
                repo.fs,
                f"bertpipe flow: {stage}",
                [d.fs_path for d in found.deps],
                [o.fs_path for o in found.outs],
                repo.config["core"].get("hardlink_lock", False),
            )
            held.__enter__()
            # As `dvc repro` does before a command: its outputs go (persistent ones stay), so
            # a stage killed here leaves none of the previous run's beside a newer lock entry.
            # DVC's own method, without its @rwlocked wrapper: that wants the repository lock
            # this path runs outside of, and the rwlock entry held just above.
            Stage.remove_outs.__wrapped__(found, ignore_remove=False, force=False)
    try:
        out = run_command(found.cmd, workdir, stage, env)
    finally:
        with _DVC_LOCK:
            held.__exit__(None, None, None)
    dvc("commit", "--force", stage, cwd=workdir, stage=stage)
    return finished(stage, True, out)


@task(task_run_name="dvc status")
def changed_stages(workdir: str = ".") -> list[str]:
    """Stages ``dvc status`` reports as changed; empty means the whole DAG is up to date."""
    import json

    return sorted(
        json.loads(
            dvc("status", "--json", cwd=workdir, stage="dvc status", stdout_only=True) or "{}"
        )
    )


@task(retries=2, retry_delay_seconds=10, task_run_name="dvc {direction}")
def dvc_sync(direction: str, workdir: str = ".") -> bool:
    """``dvc pull`` / ``dvc push`` when a default remote is configured; False when there is none."""
    remotes = run_command(dvc_command("remote", "list"), workdir, f"dvc {direction}")
    if not remotes.strip():
        return False
    # A new remote (or one behind the workspace) lacks some objects; the stages rebuild them.
    dvc(
        direction,
        *(["--allow-missing"] if direction == "pull" else []),
        cwd=workdir,
        stage=f"dvc {direction}",
    )
    return True


@task(task_run_name="write params.yaml")
def write_params(preset: str | None, overrides: list[str], workdir: str = ".") -> str:
    """``bertpipe preset`` (when a preset is given) into the working tree's params.yaml."""
    from bertpipe.config import write_preset

    path = Path(workdir) / "params.yaml"
    if preset:
        write_preset(preset, path, overrides)
    elif overrides:
        raise ValueError("overrides need a preset to apply to (e.g. preset='tiny')")
    elif not path.exists():
        raise FileNotFoundError(
            f"{path}: params file not found; pass a preset (--preset demo) or write one with "
            "`bertpipe preset demo`"
        )
    return str(path)
