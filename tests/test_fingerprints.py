"""What a rerun may keep: the pretraining resume check and the code lists behind both caches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from bertpipe.finetuning import TRAINING_CODE
from bertpipe.fingerprints import code_identity
from bertpipe.pretraining import PRETRAINING_CODE, prepare_checkpoint_dir

ROOT = Path(__file__).parents[1]


def checkpoints(folder: Path, step: int, fingerprint: str = "params-a", code: str | None = "code-a") -> Path:
    """A checkpoint folder as a run leaves it: a checkpoint at ``step`` and its fingerprint.json."""
    folder.mkdir()
    torch.save({"global_step": step, "state_dict": {"w": torch.zeros(2)}}, folder / "last.ckpt")
    (folder / "mlflow_run_id").write_text("abc\n")
    stored = {"fingerprint": fingerprint} | ({"code": code} if code else {})
    (folder / "fingerprint.json").write_text(json.dumps(stored))
    return folder


def test_an_unfinished_run_resumes_across_a_code_change(tmp_path):
    ckpt = checkpoints(tmp_path / "ckpt", step=6)
    prepare_checkpoint_dir(ckpt, "params-a", "code-b", max_steps=10)
    assert (ckpt / "last.ckpt").exists() and (ckpt / "mlflow_run_id").exists()
    assert json.loads((ckpt / "fingerprint.json").read_text()) == {"fingerprint": "params-a", "code": "code-b"}


@pytest.mark.parametrize("code", ["code-b", None], ids=["changed", "recorded-before-code-was"])
def test_a_finished_run_trains_again_after_a_code_change(tmp_path, code):
    ckpt = checkpoints(tmp_path / "ckpt", step=10, code=code)
    prepare_checkpoint_dir(ckpt, "params-a", "code-a" if code is None else "code-c", max_steps=10)
    assert sorted(p.name for p in ckpt.iterdir()) == ["fingerprint.json"]


def test_a_finished_run_with_the_same_code_is_kept_and_more_steps_continue_it(tmp_path):
    ckpt = checkpoints(tmp_path / "ckpt", step=10)
    prepare_checkpoint_dir(ckpt, "params-a", "code-a", max_steps=20)
    prepare_checkpoint_dir(ckpt, "params-a", "code-a", max_steps=10)
    assert (ckpt / "last.ckpt").exists()


def test_changed_params_start_afresh(tmp_path):
    ckpt = checkpoints(tmp_path / "ckpt", step=6)
    prepare_checkpoint_dir(ckpt, "params-b", "code-a", max_steps=10)
    assert sorted(p.name for p in ckpt.iterdir()) == ["fingerprint.json"]


def stage_code_deps(stage: dict) -> set[str]:
    prefix = "src/bertpipe/"
    return {d.removeprefix(prefix) for d in stage["deps"]
            if d.startswith(prefix) and not d.startswith(prefix + "stages/")}


def test_the_code_lists_are_the_dvc_stages_code_deps():
    """DVC reruns a stage when these files change; the caches must notice the same files."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stage_code_deps(stages["pretrain"]) == set(PRETRAINING_CODE)
    assert stage_code_deps(stages["finetune"]["do"]) == set(TRAINING_CODE)


def test_code_identity_follows_the_source(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "b.py").write_text("y = 2\n")
    monkeypatch.setattr("bertpipe.fingerprints.PACKAGE", tmp_path)
    before = code_identity(("a.py", "pkg"))
    assert code_identity(("a.py", "pkg")) == before
    (tmp_path / "pkg" / "b.py").write_text("y = 3\n")
    assert code_identity(("a.py", "pkg")) != before
