"""Stage ``finetune`` (one per task, DVC ``foreach``): every init x seed -> metrics, dev predictions, best model."""

from __future__ import annotations

import logging

from bertpipe import tracking
from bertpipe.config import load_params
from bertpipe.errors import run_main
from bertpipe.metrics_file import finetune_metrics, write_summary_and_metrics
from bertpipe.stages import parse_args
from bertpipe.training.finetuning import run_task

log = logging.getLogger("bertpipe.stages.finetune")


def main() -> None:
    args = parse_args(
        __doc__,
        ("task", "task name (finetune.tasks)"),
        ("pretrained", "pretrain stage output (the 'pretrained' init)"),
        ("tokenizer", "the pipeline's tokenizer (for the 'scratch' init)"),
        ("out", "output folder: predictions/ and the best model"),
        ("summary", "the whole summary JSON (every run, median and spread per init)"),
        ("metrics", "DVC metrics JSON (the median score per init)"),
        ("work", "per-run results kept between attempts (outside DVC outputs)"),
    )
    params = load_params(args.params)
    tracking.require_reachable()  # before anything is written
    summary = run_task(
        args.task,
        params.finetune,
        params.model,
        params.tracking,
        pretrained_dir=args.pretrained,
        tokenizer_dir=args.tokenizer,
        out_dir=args.out,
        work_dir=args.work,
    )
    write_summary_and_metrics(args.summary, args.metrics, summary, finetune_metrics(summary))
    if "skipped" in summary:
        log.warning("finetune %s: skipped (%s)", args.task, summary["skipped"])
    for label, r in summary.get("results", {}).items():
        m = r["summary"][summary["selection_metric"]]
        log.info(
            "finetune %s/%s: %s median %.2f (min %.2f, max %.2f over %d seeds)",
            args.task,
            label,
            summary["selection_metric"],
            m["median"],
            m["min"],
            m["max"],
            m["n"],
        )


if __name__ == "__main__":
    run_main(main, log)
