"""Content fingerprints: what decides whether earlier work may be reused.

Owns the hashes behind the fine-tuning run cache and the pretraining resume
check: a directory's content (checkpoints, tokenizers) and the source of the
training code. DVC decides whether a stage reruns; these decide what a rerun
may keep, so that a rerun after a code change does not hand back results the
old code made.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE = Path(__file__).parent


def directory_identity(path: Path | None) -> str:
    """Hash of a directory's files (names and contents, not subdirectories); ``"none"`` for None."""
    if path is None:
        return "none"
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).iterdir() if p.is_file()):
        h.update(f.name.encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def code_identity(names: tuple[str, ...]) -> str:
    """Hash of the package's source files ``names`` (modules or subpackages, relative to ``bertpipe/``)."""
    h = hashlib.sha256()
    for name in names:
        path = PACKAGE / name
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(f.read_bytes())
    return h.hexdigest()[:16]
