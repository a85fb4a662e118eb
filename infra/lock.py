"""Write the two lock files from the project's virtual environment.

    .venv/bin/python infra/lock.py

``requirements.lock``: every package the installed project needs at run time (the
closure of ``[project] dependencies``, what the GPU worker image installs).
``requirements-dev.lock``: everything else installed for tests, benchmarks and
linters (the closure of the ``dev`` extra), installed on top of the first.
Both pin exact versions; torch must stay at 2.13.0 (checked here).
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
HEADER = "# Written by infra/lock.py from the project's .venv; do not edit by hand.\n"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(requirements: list[str]) -> dict[str, str]:
    """{normalised name: installed version} of ``requirements`` and everything they need."""
    env = default_environment()
    out: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = _norm(req.name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            sys.exit(f"infra/lock.py: {req.name} is required but not installed in this environment")
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        out[name] = dist.version
        for spec in dist.requires or []:
            dep = Requirement(spec)
            if dep.marker is not None and not any(
                dep.marker.evaluate({**env, "extra": e}) for e in (req.extras or {""})
            ):
                continue
            todo.append(dep)
    return out


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = closure(project["dependencies"])
    dev = {
        k: v
        for k, v in closure(project["optional-dependencies"]["dev"]).items()
        if k not in runtime
    }
    runtime.pop("bertpipe", None)
    if runtime.get("torch", "").split("+")[0] != "2.13.0":
        sys.exit(f"infra/lock.py: torch is {runtime.get('torch')} in this environment, not 2.13.0")
    names = {_norm(d.metadata["Name"]): d.metadata["Name"] for d in metadata.distributions()}
    for path, pins, note in (
        (ROOT / "requirements.lock", runtime, "runtime: what the installed package needs"),
        (
            ROOT / "requirements-dev.lock",
            dev,
            "development: tests, bench/, linters (on top of requirements.lock)",
        ),
    ):
        lines = [f"{names.get(k, k)}=={v}" for k, v in sorted(pins.items())]
        path.write_text(HEADER + f"# {note}\n" + "\n".join(lines) + "\n")
        print(f"{path.name}: {len(lines)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
