"""Which trained models are registered after a pipeline run, and by which score they compete.

Owns the promotion rule the flow applies: each pretrained family's model competes by
the GLUE average of its ``pretrained:FAMILY`` init (registered per family); each fine-tuned model by its task's
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
    """The models of a finished run (``reports/summary.json`` and the model directories)."""
    root = Path(workdir)
    report = json.loads((root / "reports/summary.json").read_text())
    out = []
    for label, glue in report.get("glue_average", {}).items():
        # one registered model per pretrained family: bertpipe-pretrained (BERT, as before
        # other families existed), bertpipe-pretrained-gpt, bertpipe-pretrained-elmo
        family = "bert" if label == "pretrained" else label.removeprefix("pretrained_")
        if label != "pretrained" and not label.startswith("pretrained_"):
            continue
        model_dir = root / "models/pretrained" / family
        if model_dir.is_dir():
            name = "bertpipe-pretrained" + ("" if family == "bert" else f"-{family}")
            out.append(Candidate(name, model_dir, "glue_average", glue))
    for task, scores in report.get("tasks", {}).items():
        model_dir = root / "results/finetune" / task / "model"
        if "pretrained" in scores and model_dir.is_dir():
            out.append(Candidate(f"bertpipe-{task}", model_dir, "dev_score", scores["pretrained"]))
    return out
