"""What a rerun may keep: the pretraining resume check and the code lists behind both caches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bertpipe.code_deps import stage_entry_modules
from bertpipe.training.checkpoints import mark_finished, prepare_checkpoint_dir
from bertpipe.training.finetuning import TRAINING_CODE
from bertpipe.training.pretraining import PRETRAINING_CODE

ROOT = Path(__file__).parents[1]


def checkpoints(
    folder: Path, step: int, fingerprint: str = "params-a", code: str | None = "code-a"
) -> Path:
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
    assert json.loads((ckpt / "fingerprint.json").read_text()) == {
        "fingerprint": "params-a",
        "code": "code-b",
    }


@pytest.mark.parametrize("code", ["code-b", None], ids=["changed", "recorded-before-code-was"])
def test_a_finished_run_trains_again_after_a_code_change(tmp_path, code):
    ckpt = checkpoints(tmp_path / "ckpt", step=10, code=code)
    prepare_checkpoint_dir(ckpt, "params-a", "code-a" if code is None else "code-c", max_steps=10)
    assert sorted(p.name for p in ckpt.iterdir()) == ["fingerprint.json"]


def test_a_finished_run_whose_last_checkpoint_predates_its_end_trains_again_after_a_code_change(
    tmp_path,
):
    """Checkpoints come every val_every_n_steps: the demo's 500-step run kept step 300 as its
    last. Resuming that after a code change would mix the old code's 300 steps into the model."""
    ckpt = checkpoints(tmp_path / "ckpt", step=6)
    mark_finished(ckpt, 10)
    assert json.loads((ckpt / "fingerprint.json").read_text())["finished_steps"] == 10
    prepare_checkpoint_dir(ckpt, "params-a", "code-b", max_steps=10)
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


def test_the_code_hashes_cover_what_dvc_tracks():
    """DVC reruns a stage when its code deps change; the caches hash the same closure
    (``tests/test_code_deps.py`` checks the deps equal the closure)."""
    entries = stage_entry_modules(ROOT / "dvc.yaml")
    assert entries["pretrain"][0] == PRETRAINING_CODE
    assert entries["finetune"][0] == TRAINING_CODE
