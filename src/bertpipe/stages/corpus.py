"""Stage ``corpus``: sources -> cleaned, sentence-split shards + statistics + metrics."""

from __future__ import annotations

import logging

from bertpipe.config import load_params
from bertpipe.data.corpus import build_corpus
from bertpipe.errors import run_main
from bertpipe.metrics_file import CORPUS, pick, write_summary_and_metrics
from bertpipe.stages import parse_args

log = logging.getLogger("bertpipe.stages.corpus")


def main() -> None:
    args = parse_args(
        __doc__,
        ("out", "output folder (train/ and valid/ shards)"),
        ("stats", "the whole statistics JSON (per source, dropped counts)"),
        ("metrics", "DVC metrics JSON (documents, sentences, characters)"),
    )
    cfg = load_params(args.params).corpus
    stats = build_corpus(cfg, args.out)
    write_summary_and_metrics(args.stats, args.metrics, stats, pick(stats, CORPUS))
    total = stats["total"]
    log.info(
        "corpus: %d documents, %d sentences, %d words kept; dropped %s",
        total["documents"],
        total["sentences"],
        total["words"],
        total["dropped"],
    )


if __name__ == "__main__":
    run_main(main, log)
