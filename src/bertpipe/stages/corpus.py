"""Stage ``corpus``: sources -> cleaned, sentence-split shards + corpus_stats.json."""

from __future__ import annotations

import logging

from bertpipe.atomic import write_json
from bertpipe.config import load_params
from bertpipe.data.corpus import build_corpus
from bertpipe.errors import run_main
from bertpipe.stages import parse_args

log = logging.getLogger("bertpipe.stages.corpus")


def main() -> None:
    args = parse_args(
        __doc__,
        ("out", "output folder (train/ and valid/ shards)"),
        ("stats", "corpus_stats.json path"),
    )
    cfg = load_params(args.params).corpus
    stats = build_corpus(cfg, args.out)
    write_json(args.stats, stats)
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
