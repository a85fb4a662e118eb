"""DVC the way bertpipe's entry points run it: its own CLI, with its YAML files written atomically.

DVC 3.67 rewrites ``dvc.lock`` (and ``dvc.yaml`` on ``dvc stage add``) in place: it opens
the file with ``"w+"``, which truncates it, then streams the new text
(``dvc/utils/serialize/_common.py``, ``_dump_data``). A process killed in between
leaves an empty or shortened lock; a shortened one can still be valid YAML with whole
stages missing, which DVC then reruns or, worse, reports as never run. A reader in
another process (a sibling stage of the flow's fan-out reading the lock while
``dvc commit`` writes it) can see the half-written text. No DVC setting changes this.

Here the writer is replaced, for this process only, by one that writes a temporary
file beside the target, fsyncs it and renames it over the target: a kill leaves the
old file or the new one, and readers never see a partial one. ``bertpipe run``, the
Prefect flow and the tests invoke DVC through ``python -m bertpipe.dvc_runner ARGS``
(the same arguments as ``dvc``), with this interpreter's directory first on PATH so the
stage commands' ``python`` is this environment's.

A second layer, for locks broken by a plain ``dvc`` (or another tool): ``LockGuard``
keeps a copy of the last valid ``dvc.lock`` in ``.dvc/tmp/`` and, before and after a
command, restores it (and says so) when the lock is unreadable, fails DVC's schema, or
lost stages the copy had.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def _atomic_dump_data(original):
    def dump(path, data, dumper, fs=None, **dumper_args):
        from dvc.fs import LocalFileSystem

        if fs is not None and not isinstance(fs, LocalFileSystem):
            return original(path, data, dumper, fs=fs, **dumper_args)
        target = Path(os.fspath(path))
        # ".NAME.*.partial" is ignored by git (.gitignore), like every partial output here.
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                dumper(data, f, **dumper_args)
                f.flush()
                os.fsync(f.fileno())
            if target.exists():
                os.chmod(tmp, target.stat().st_mode & 0o7777)
            else:
                os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return None

    return dump


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def install_atomic_writes() -> None:
    """Make DVC's YAML/JSON/TOML writes in this process atomic (idempotent)."""
    from dvc.utils.serialize import _common, _json, _toml, _yaml

    if getattr(_common._dump_data, "bertpipe_atomic", False):
        return
    atomic = _atomic_dump_data(_common._dump_data)
    atomic.bertpipe_atomic = True
    for module in (_common, _yaml, _json, _toml):
        module._dump_data = atomic


def command(*args: str) -> list[str]:
    """The argv that runs ``dvc ARGS`` this way, with this interpreter (no venv activation needed)."""
    return [sys.executable, "-m", "bertpipe.dvc_runner", *args]


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for DVC and its stages: this interpreter's tools first."""
    env = {**os.environ, **(extra or {})}
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env.setdefault("DVC_NO_ANALYTICS", "1")
    return env


def lock_problem(path: Path) -> str | None:
    """Why ``dvc.lock`` at ``path`` cannot be used, or None (a missing lock is fine)."""
    if not path.exists():
        return None
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA
    from dvc.utils.serialize import YAMLError, parse_yaml

    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return "it is empty"
    try:
        COMPILED_LOCKFILE_SCHEMA(parse_yaml(text, str(path)))
    except YAMLError as e:
        return f"it is not valid YAML ({e})"
    except Exception as e:
        return f"it does not match DVC's lock-file schema ({e})"
    return None


def _stages(path: Path) -> set[str]:
    import yaml

    return set((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages", {}))


def _defined_stages(root: Path) -> set[str]:
    """The stages dvc.yaml defines now (``foreach`` expanded); a lock entry of another is stale."""
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    try:
        with Repo(str(root)) as repo:
            return {s.name for s in repo.index.stages if isinstance(s, PipelineStage)}
    except Exception:
        return set()


class LockGuard:
    """Keep ``dvc.lock`` whole across a DVC command: check before, check after, restore the copy."""

    def __init__(self, root: str | Path = ".", log=None):
        self.lock = Path(root) / "dvc.lock"
        self.backup = Path(root) / ".dvc" / "tmp" / "dvc.lock.bertpipe-backup"
        self.log = log or (lambda message: print(message, file=sys.stderr))
        self.restored: list[str] = []

    def check(self, when: str) -> None:
        """Restore the copy if the lock is broken or lost stages; else refresh the copy."""
        problem = lock_problem(self.lock)
        if problem is None and self.lock.exists() and self.backup.exists():
            lost = (_stages(self.backup) - _stages(self.lock)) & _defined_stages(self.lock.parent)
            if lost and when == "before":
                problem = f"it lost the entries of {', '.join(sorted(lost))} since the last run"
        if problem is not None:
            if self.backup.exists() and lock_problem(self.backup) is None:
                os.replace(
                    self._copy(self.backup, self.lock.with_name(".dvc.lock.restore")), self.lock
                )
                self.restored.append(problem)
                self.log(
                    f"bertpipe: {self.lock} was damaged {when} this run ({problem}); restored the "
                    f"copy of the last valid lock from {self.backup}. Stages that ran since then "
                    "run again."
                )
            else:
                self.log(
                    f"bertpipe: {self.lock} is damaged ({problem}) and there is no valid copy; "
                    f"restore it from git (`git checkout -- dvc.lock`) or delete it to rerun "
                    "every stage."
                )
            return
        if self.lock.exists():
            self.backup.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._copy(self.lock, self.backup.with_suffix(".tmp")), self.backup)

    @staticmethod
    def _copy(src: Path, dst: Path) -> Path:
        with open(dst, "wb") as f:
            f.write(src.read_bytes())
            f.flush()
            os.fsync(f.fileno())
        return dst

    def __enter__(self) -> LockGuard:
        self.check("before")
        return self

    def __exit__(self, *exc) -> None:
        self.check("after")


def run(args: list[str], cwd: str | Path = ".", env: dict[str, str] | None = None, **kwargs):
    """``dvc ARGS`` in a subprocess, atomic writes on, the lock guarded; a CompletedProcess."""
    import subprocess

    with LockGuard(cwd):
        return subprocess.run(command(*args), cwd=cwd, env=environment(env), check=False, **kwargs)


def main(argv: list[str] | None = None) -> int:
    from dvc.cli import main as dvc_main

    install_atomic_writes()
    # Run directly (``.venv/bin/python -m bertpipe.dvc_runner repro``, no venv activated), the
    # stage commands' ``python`` must still be this environment's, not the first on PATH.
    os.environ.update(environment())
    return dvc_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
