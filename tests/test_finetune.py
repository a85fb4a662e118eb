"""Fine-tuning a real checkpoint (MiniLM) and the from-scratch baseline on real GLUE data."""

from __future__ import annotations

import json

import pytest

from bertpipe.finetuning import finetune_glue
from bertpipe.model import BertConfig

pytestmark = pytest.mark.slow


def test_minilm_learns_sst2_subset_and_beats_scratch(minilm_dir, tmp_path):
    kw = dict(learning_rate=1e-4, batch_size=16, epochs=2, max_length=64, warmup_fraction=0.1,
              max_train_examples=800, seed=1)
    pre = finetune_glue("sst2", str(minilm_dir), minilm_dir, work_dir=tmp_path / "pre", **kw)
    scratch = finetune_glue("sst2", "scratch", minilm_dir, work_dir=tmp_path / "scratch",
                            scratch_config=BertConfig.from_size("tiny", 30522), **kw)
    assert set(pre) >= {"val/acc", "val/loss", "steps"} and pre["train_examples"] == 800
    assert pre["val/acc"] > 0.7  # 872 dev sentences; chance is 0.51 (0.78 measured)
    assert pre["val/acc"] > scratch["val/acc"]
    preds = json.loads((tmp_path / "pre" / "dev_predictions.json").read_text())
    assert len(preds) == 872 and set(preds) <= {0, 1}


def test_stsb_regression_reports_correlations(minilm_dir, tmp_path):
    m = finetune_glue("stsb", str(minilm_dir), minilm_dir, work_dir=tmp_path, learning_rate=5e-5,
                      batch_size=16, epochs=1, max_length=64, warmup_fraction=0.1,
                      max_train_examples=200, seed=2)
    assert {"val/pearson", "val/spearman"} <= set(m)
    assert -1 <= m["val/pearson"] <= 1
