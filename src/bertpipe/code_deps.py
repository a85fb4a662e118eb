"""The bertpipe source files a module imports: the closure DVC's code deps and code hashes cover.

Owns one question: which files of this package can change what a stage
computes? The answer is the transitive closure of the ``bertpipe`` imports of
the stage's entry module (module-level and function-level imports alike).
``tests/test_code_deps.py`` checks that every stage in ``dvc.yaml`` lists each
file of its closure (or a folder holding it) among its deps, and the training
stages hash the same closure to decide whether a checkpoint made by other code
may be reused (``training/fingerprints.py``).

Package ``__init__`` files that hold only a docstring and constants are left
out: they cannot change a result.

    python -m bertpipe.code_deps dvc.yaml     # each stage's closure and what its deps miss
"""

from __future__ import annotations

import ast
import hashlib
import sys
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
SRC = PACKAGE.parent


def module_file(name: str) -> Path | None:
    """The source file of module ``name`` (``bertpipe.x.y``), or None if it is not ours."""
    if name != "bertpipe" and not name.startswith("bertpipe."):
        return None
    path = SRC.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> set[str]:
    """Every ``bertpipe`` module (and parent package) that ``path`` imports, anywhere in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = (
        _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    )
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # ``from pkg import module``
    out: set[str] = set()
    for name in names:
        parts = name.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return out


def _inert(path: Path) -> bool:
    """An ``__init__.py`` of only a docstring and constant assignments."""
    if path.name != "__init__.py":
        return False
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(
        isinstance(n, ast.Expr)
        and isinstance(n.value, ast.Constant)
        or isinstance(n, ast.Assign)
        and isinstance(n.value, ast.Constant)
        for n in body
    )


@cache
def import_closure(module: str) -> tuple[Path, ...]:
    """Source files of ``module`` and everything of ours it imports, sorted, relative to ``src/``."""
    start = module_file(module)
    if start is None:
        raise ValueError(f"{module}: not a module of the bertpipe package")
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(f for f in map(module_file, _imported(path)) if f is not None)
    return tuple(sorted(p.relative_to(SRC) for p in seen if not _inert(p)))


def code_identity(module: str) -> str:
    """Hash of the closure's sources: it changes exactly when code the module runs changes."""
    h = hashlib.sha256()
    for rel in import_closure(module):
        h.update(str(rel).encode())
        h.update((SRC / rel).read_bytes())
    return h.hexdigest()[:16]


def stage_entry_modules(dvc_yaml: str | Path) -> dict[str, tuple[str, list[str]]]:
    """``{stage: (entry module, code deps)}`` for every ``python -m bertpipe...`` stage of a dvc.yaml.

    Code deps are the deps under ``src/``, relative to it (``bertpipe/x.py``, ``bertpipe/tasks``).
    """
    import yaml

    stages = yaml.safe_load(Path(dvc_yaml).read_text(encoding="utf-8"))["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        words = body["cmd"].split()
        if "-m" not in words or not words[words.index("-m") + 1].startswith("bertpipe."):
            continue
        deps = [d if isinstance(d, str) else next(iter(d)) for d in body.get("deps", [])]
        code = [d.removeprefix("src/").rstrip("/") for d in deps if d.startswith("src/")]
        out[name] = (words[words.index("-m") + 1], code)
    return out


def uncovered(closure: tuple[Path, ...], deps: list[str]) -> list[str]:
    """Closure files that no dep (a file, or a folder above it) covers."""
    return [
        str(f) for f in closure if not any(str(f) == d or str(f).startswith(d + "/") for d in deps)
    ]


def unused(closure: tuple[Path, ...], deps: list[str]) -> list[str]:
    """Code deps that cover no closure file (stale: an edit there reruns the stage for nothing)."""
    return [d for d in deps if not any(str(f) == d or str(f).startswith(d + "/") for f in closure)]


def main(argv: list[str]) -> int:
    path = argv[0] if argv else "dvc.yaml"
    bad = 0
    for stage, (module, deps) in stage_entry_modules(path).items():
        closure = import_closure(module)
        missing, stale = uncovered(closure, deps), unused(closure, deps)
        bad += bool(missing or stale)
        print(f"{stage} ({module}): {len(closure)} files")
        for f in missing:
            print(f"  missing dep: src/{f}")
        for d in stale:
            print(f"  stale dep:   src/{d}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
