"""Stage ``pretrain_data``: corpus + tokenizer -> memory-mapped instances + statistics + metrics."""

from __future__ import annotations

import logging

from bertpipe.config import load_params
from bertpipe.data.instances import build_pretrain_data
from bertpipe.errors import run_main
from bertpipe.metrics_file import PRETRAIN_DATA, pick, write_summary_and_metrics
from bertpipe.stages import parse_args

log = logging.getLogger("bertpipe.stages.pretrain_data")


def main() -> None:
    args = parse_args(
        __doc__,
        ("corpus", "corpus stage output folder"),
        ("tokenizer", "tokenizer stage output folder"),
        ("out", "output folder (train/, valid/, meta.json)"),
        ("stats", "the whole statistics JSON (train and valid)"),
        ("metrics", "DVC metrics JSON (train instances, tokens, padding_fraction)"),
    )
    cfg = load_params(args.params).pretrain_data
    stats = build_pretrain_data(cfg, args.corpus, args.tokenizer, args.out)
    write_summary_and_metrics(args.stats, args.metrics, stats, pick(stats, PRETRAIN_DATA))
    log.info(
        "pretrain_data: %d train / %d valid instances, random-next %.3f",
        stats["train"]["instances"],
        stats["valid"]["instances"],
        stats["train"]["random_next_fraction"] or 0,
    )


if __name__ == "__main__":
    run_main(main, log)
