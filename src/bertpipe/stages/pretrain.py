"""Stage ``pretrain@FAMILY`` (DVC ``foreach``): pretrain_data + tokenizer -> model, summary,
metrics, curves, MLflow run."""

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
        ("family", "model family (pretrain.families)"),
        ("data", "pretrain_data output folder"),
        ("tokenizer", "tokenizer folder"),
        ("out", "output folder for the Hugging Face-format model"),
        ("checkpoints", "resumable checkpoints (kept outside DVC outputs)"),
        ("summary", "the whole summary JSON (budget, losses, fill-mask examples)"),
        ("metrics", "DVC metrics JSON (held-out accuracies, perplexity, tokens/s)"),
        ("plots", "folder for the loss/accuracy curves (CSV)"),
    )
    params = load_params(args.params)
    tracking.require_reachable()  # before anything is written
    m = run_pretraining(
        args.family,
        params.model,
        params.pretrain,
        params.tracking,
        args.data,
        args.tokenizer,
        args.out,
        args.checkpoints,
        args.summary,
        args.metrics,
        args.plots,
    )
    log.info(
        "pretrain %s: %d steps, %.3g tokens, %.3g FLOPs, %.0f s; %s (unigram baseline %.4f)",
        args.family,
        m["steps"],
        m["used/tokens"],
        m["used/flops"],
        m["used/seconds"],
        {k: round(v, 4) for k, v in m.items() if k.startswith("val/") and k.endswith("acc")},
        m["val/unigram_baseline_acc"],
    )


if __name__ == "__main__":
    run_main(main, log)
