"""Stage ``pretrain``: pretrain_data + tokenizer -> HF-format model, metrics, curves, MLflow run."""

from __future__ import annotations

import logging

from bertpipe import tracking
from bertpipe.config import load_params
from bertpipe.errors import run_main
from bertpipe.stages import parse_args
from bertpipe.training.pretraining import run_pretraining

log = logging.getLogger("bertpipe.stages.pretrain")


def main() -> None:
    args = parse_args(
        __doc__,
        ("data", "pretrain_data output folder"),
        ("tokenizer", "tokenizer folder"),
        ("out", "output folder for the Hugging Face-format model"),
        ("checkpoints", "resumable checkpoints (kept outside DVC outputs)"),
        ("metrics", "metrics JSON path"),
        ("plots", "folder for the loss/accuracy curves (CSV)"),
    )
    params = load_params(args.params)
    tracking.require_reachable()  # before anything is written
    m = run_pretraining(
        params.model,
        params.pretrain,
        params.tracking,
        args.data,
        args.tokenizer,
        args.out,
        args.checkpoints,
        args.metrics,
        args.plots,
    )
    log.info(
        "pretrain: %d steps, val MLM acc %.4f (unigram baseline %.4f), NSP acc %s",
        m["steps"],
        m.get("val/mlm_acc", float("nan")),
        m["val/unigram_baseline_acc"],
        m.get("val/nsp_acc"),
    )


if __name__ == "__main__":
    run_main(main, log)
