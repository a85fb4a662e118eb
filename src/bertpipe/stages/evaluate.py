"""Stage ``evaluate``: fine-tuning and pretraining summaries -> report.md, index.html,
summary.json, metrics.json (the GLUE averages), PNG plots, MLflow."""

from __future__ import annotations

import logging
from pathlib import Path

from bertpipe import tracking
from bertpipe.config import load_params
from bertpipe.errors import MissingInputError, run_main
from bertpipe.evaluation.html_report import write_html
from bertpipe.evaluation.report import build_report
from bertpipe.stages import parse_args

log = logging.getLogger("bertpipe.stages.evaluate")


def main() -> None:
    args = parse_args(
        __doc__,
        ("finetune", "folder of the finetune stages' summaries (TASK.json) and outputs (TASK/)"),
        ("pretrain", "folder of the pretrain stages' summaries (one JSON per family)"),
        ("curves", "folder of the pretrain stages' curves (one folder per family)"),
        ("pretrained", "pretrain stage output (identifies the MLflow pipeline run)"),
        ("out", "report folder (report.md, index.html, summary.json, metrics.json, plots/)"),
    )
    params = load_params(args.params)
    tracking.require_reachable()  # before anything is written
    files = [Path(args.finetune) / f"{task}.json" for task in params.finetune.tasks]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise MissingInputError(
            f"evaluate: no fine-tuning results {missing}; run the finetune stages first (dvc repro)"
        )
    metrics = build_report(
        files,
        Path(args.pretrain),
        Path(args.curves),
        params.model.bert.size,
        args.out,
        Path(args.pretrained) / "bert",
        Path(args.finetune),
        params.pretrain.families,
    )
    parent = tracking.pipeline_run(params.tracking.experiment, args.pretrained)
    write_html(args.out, "bertpipe report", {"MLflow pipeline run": tracking.run_url(parent)})
    tracking.log_to_run(
        parent,
        metrics={f"glue_average/{k}": v for k, v in metrics["glue_average"].items()},
        artifacts={"report": args.out},
        finish=True,
    )
    log.info(
        "evaluate: report in %s; GLUE average %s; skipped %s",
        args.out,
        metrics["glue_average"],
        sorted(metrics["skipped"]),
    )


if __name__ == "__main__":
    run_main(main, log)
