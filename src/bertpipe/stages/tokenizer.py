"""Stage ``tokenizer``: corpus -> WordPiece tokenizer directory + statistics + metrics."""

from __future__ import annotations

import logging

from bertpipe.atomic import atomic_dir
from bertpipe.config import load_params
from bertpipe.data.shards import shard_files
from bertpipe.data.tokenizer import load_existing, save_tokenizer, tokenizer_stats, train_tokenizer
from bertpipe.errors import run_main
from bertpipe.metrics_file import TOKENIZER, pick, write_summary_and_metrics
from bertpipe.stages import parse_args

log = logging.getLogger("bertpipe.stages.tokenizer")


def main() -> None:
    args = parse_args(
        __doc__,
        ("corpus", "corpus stage output folder"),
        ("out", "tokenizer output folder"),
        ("stats", "the whole statistics JSON"),
        ("metrics", "DVC metrics JSON (vocab_size, unk_rate, tokens_per_word)"),
    )
    cfg = load_params(args.params).tokenizer
    if cfg.reuse_from:
        tok = load_existing(cfg.reuse_from, cfg.lowercase, cfg.strip_accents)
    else:
        tok = train_tokenizer(cfg, shard_files(args.corpus, "train"))
    held_out = shard_files(args.corpus, "valid")
    stats = tokenizer_stats(tok, held_out, cfg.stats_max_sentences)
    stats["source"] = cfg.reuse_from or "trained"
    with atomic_dir(args.out) as tmp:
        save_tokenizer(tok, tmp, cfg.model_max_length)
    write_summary_and_metrics(args.stats, args.metrics, stats, pick(stats, TOKENIZER))
    log.info(
        "tokenizer: vocab %d, [UNK] rate %.5f, %.3f tokens/word on %d held-out sentences",
        stats["vocab_size"],
        stats["unk_rate"] or 0,
        stats["tokens_per_word"] or 0,
        stats["sentences"],
    )


if __name__ == "__main__":
    run_main(main, log)
