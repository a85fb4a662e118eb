"""Which trained models are registered after a pipeline run, and by which score they compete.

Owns the promotion rule the flow applies: the pretrained model competes by the
GLUE average of its ``pretrained`` init; each fine-tuned model by its task's
median dev score from the ``pretrained`` init. The registry
(``tracking.register_and_promote``) moves the ``champion`` alias only to a
higher score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Candidate:
    name: str
    """Registered model name."""
    model_dir: Path
    metric: str
    value: float


def candidates(workdir: str | Path) -> list[Candidate]:
    """The models of a finished run (``reports/metrics.json`` and the model directories)."""
    root = Path(workdir)
    report = json.loads((root / "reports/metrics.json").read_text())
    out = []
    glue = report.get("glue_average", {}).get("pretrained")
    if glue is not None and (root / "models/pretrained").is_dir():
        out.append(
            Candidate("bertpipe-pretrained", root / "models/pretrained", "glue_average", glue)
        )
    for task, scores in report.get("tasks", {}).items():
        model_dir = root / "results/finetune" / task / "model"
        if "pretrained" in scores and model_dir.is_dir():
            out.append(Candidate(f"bertpipe-{task}", model_dir, "dev_score", scores["pretrained"]))
    return out
