"""A stage's outputs in comparable form: bytes, tensors, metrics without timings; dvc.lock entries."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import yaml


def comparable_tiny_params() -> dict:
    """The tiny preset with one fine-tuning run (rte, pretrained init, seed 1), fp32 and
    deterministic on CPU: two runs of the same code give equal outputs."""
    from bertpipe.config import preset_values

    params = preset_values("tiny")
    params["pretrain"]["families"] = ["bert"]
    params["finetune"].update(
        {"tasks": ["rte"], "inits": ["pretrained"], "seeds": [1], "optional_tasks": []}
    )
    params["pretrain"].update(
        {"precision": "32-true", "accelerator": "cpu", "devices": 1, "deterministic": True}
    )
    params["finetune"].update({"precision": "32-true", "accelerator": "cpu"})
    return params


TIMING_FILES = {  # outputs that hold throughput or timings: compared without those keys
    "results/pretrain/bert.json",
    "metrics/pretrain/bert.json",
    "metrics/pretrain_curves/bert",
    "results/finetune/rte.json",
}
TIMING_KEYS = {
    "tokens_per_s",
    "train/tokens_per_s",
    "fit_seconds",
    "fit_examples_per_s",
    "used/seconds",
}


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _tree_bytes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _csv_without_timings(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    cols = lines[0].split(",")
    return [
        {c: v for c, v in zip(cols, line.split(","), strict=True) if c not in TIMING_KEYS}
        for line in lines[1:]
    ]


def snapshot(root: Path, stage: str) -> dict:
    """What a stage produced, in the form compared with the reference."""
    if stage in ("corpus", "pretrain_data"):
        folder = {"corpus": "data/corpus", "pretrain_data": "data/pretrain"}[stage]
        stats = {"corpus": "corpus_stats", "pretrain_data": "pretrain_data_stats"}[stage]
        return {
            "bytes": _tree_bytes(root / folder),
            "stats": (root / f"results/{stats}.json").read_text(),
        }
    if stage.startswith("pretrain@"):
        family = stage.removeprefix("pretrain@")
        model, curves = (
            root / "models/pretrained" / family,
            root / "metrics/pretrain_curves" / family,
        )
        return {
            "tensors": _tensors(model / "model.safetensors"),
            "files": {k: v for k, v in _tree_bytes(model).items() if k != "model.safetensors"},
            "metrics": _without_timings(
                json.loads((root / "results/pretrain" / f"{family}.json").read_text())
            ),
            "train_curve": _csv_without_timings(curves / "train.csv"),
            "val_curve": (curves / "val.csv").read_text(),
        }
    out = root / "results/finetune/rte"
    return {
        "tensors": _tensors(out / "model/model.safetensors"),
        "predictions": _tree_bytes(out / "predictions"),
        "metrics": _without_timings(json.loads((root / "results/finetune/rte.json").read_text())),
    }


def differences(a: dict, b: dict) -> list[str]:
    problems = []
    for key in a:
        x, y = a[key], b[key]
        if key == "tensors":
            if x.keys() != y.keys():
                problems.append("tensor names differ")
            problems += [f"tensor {k} differs" for k in x if k in y and not torch.equal(x[k], y[k])]
        elif x != y:
            problems.append(f"{key} differs")
    return problems


def lock_entries(root: Path) -> dict:
    """``dvc.lock``'s stages, with the hashes of the timing-bearing outputs left out."""
    stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    for entry in stages.values():
        entry["outs"] = [o for o in entry.get("outs", []) if o["path"] not in TIMING_FILES]
    return stages
