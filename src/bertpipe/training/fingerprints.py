"""Content fingerprints: what decides whether earlier work may be reused.

Owns the hashes behind the fine-tuning run cache and the pretraining resume
check: a directory's content (checkpoints, tokenizers); the code's is
``code_deps.code_identity`` (the files DVC tracks as the stage's code deps). DVC decides whether a stage
reruns; these decide what a rerun may keep, so that a rerun after a code change
does not hand back results the old code made.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def directory_identity(path: Path | None) -> str:
    """Hash of a directory's files (names and contents, not subdirectories); ``"none"`` for None."""
    if path is None:
        return "none"
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).iterdir() if p.is_file()):
        h.update(f.name.encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]
