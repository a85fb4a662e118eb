"""The data half of the pipeline: where text comes from and what the model is fed.

catalog (named datasets: hub | mirror), readers (streaming sources), corpus (clean,
split, dedupe, hold out), shards (the corpus format), tokenizer (WordPiece),
instances + pretrain_format (NSP pairs / packed sequences as token arrays), masking.
"""
