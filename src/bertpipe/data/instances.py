"""Pretraining instances: NSP sentence pairs or packed MLM sequences, built from corpus shards.

Owns the algorithm of the ``pretrain_data`` stage and the stage itself (parallel over shards).
The output format is ``data/pretrain_format.py``'s.

Instances are built as in BERT's ``create_pretraining_data.py``: a target length
(``max_seq_length - 3``, or with ``short_seq_prob`` a random shorter one) is
filled with whole sentences of one document; segment A is a random prefix of
them; B is the rest (actual next) or, half of the time, a run of sentences from
a random other document, the unused sentences being put back; the longer side
is truncated at a random end. Deviations, each to keep the statistics honest:

* the random document comes from the same corpus shard (shards hold >= 8
  documents) so shards are built independently, in parallel and streaming;
* a chunk of a single sentence is split at a random token into A and B when
  "actual next" is drawn, instead of BERT's forced random next, which pushes
  the random-next rate above 50%.

MLM-only mode packs sentences contiguously (documents separated by [SEP]) into
``[CLS] ... [SEP]`` sequences, as RoBERTa's FULL-SENTENCES. The same seed gives
byte-identical output whatever the number of workers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
from itertools import chain
from pathlib import Path

import numpy as np

from bertpipe.atomic import atomic_dir, write_json
from bertpipe.config import PretrainDataConfig
from bertpipe.data.masking import Masker
from bertpipe.data.parallel import ordered_map
from bertpipe.data.pretrain_format import (
    FORMAT_VERSION,
    SPLITS,
    PretrainArrays,
    array_dtype,
    concat_parts,
    describe_instance,
)
from bertpipe.data.shards import read_documents, shard_files
from bertpipe.errors import InputError, MissingInputError

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- reading


def encode_documents(tok, docs: list[list[str]]) -> list[list[np.ndarray]]:
    """Token ids per sentence per document (no special tokens)."""
    flat = list(chain.from_iterable(docs))
    encodings = tok.encode_batch(flat, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(flat))
    ids = np.fromiter(
        chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=int(lengths.sum())
    )
    sentences = np.split(ids, np.cumsum(lengths)[:-1]) if len(flat) else []
    out, i = [], 0
    for doc in docs:
        out.append([s for s in sentences[i : i + len(doc)] if len(s)])
        i += len(doc)
    return [d for d in out if d]


# ---------------------------------------------------------------------------- building


def _truncate_pair(a: np.ndarray, b: np.ndarray, max_tokens: int, rng: random.Random):
    """Trim the longer side, at its front or back at random, until both fit (BERT's rule)."""
    a_lo, a_hi, b_lo, b_hi = 0, len(a), 0, len(b)
    while (a_hi - a_lo) + (b_hi - b_lo) > max_tokens:
        if a_hi - a_lo > b_hi - b_lo:
            if rng.random() < 0.5:
                a_lo += 1
            else:
                a_hi -= 1
        elif rng.random() < 0.5:
            b_lo += 1
        else:
            b_hi -= 1
    return a[a_lo:a_hi], b[b_lo:b_hi]


def nsp_instances(
    docs: list[list[np.ndarray]], max_seq_length: int, short_seq_prob: float, rng: random.Random
):
    """Yield (tokens_a, tokens_b, is_random_next) for every document, BERT-style."""
    max_tokens = max_seq_length - 3
    if len(docs) < 2:
        raise InputError(
            "NSP needs at least two documents per corpus shard; "
            "add text, or set pretrain_data.nsp: false"
        )
    for d, doc in enumerate(docs):
        target = max_tokens
        if rng.random() < short_seq_prob:
            target = rng.randint(2, max_tokens)
        chunk, length, i = [], 0, 0
        while i < len(doc):
            chunk.append(doc[i])
            length += len(doc[i])
            if i == len(doc) - 1 or length >= target:
                is_random = rng.random() < 0.5
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                a = np.concatenate(chunk[:a_end])
                if is_random:
                    other = d
                    while other == d:
                        other = rng.randrange(len(docs))
                    rdoc = docs[other]
                    want, parts, got = target - len(a), [], 0
                    for j in range(rng.randrange(len(rdoc)), len(rdoc)):
                        parts.append(rdoc[j])
                        got += len(rdoc[j])
                        if got >= want:
                            break
                    b = np.concatenate(parts)
                    i -= len(chunk) - a_end  # put the unused sentences back
                elif len(chunk) == 1:
                    if len(a) < 2:  # nothing to split: a one-token document
                        chunk, length = [], 0
                        i += 1
                        continue
                    cut = rng.randint(1, len(a) - 1)
                    a, b = a[:cut], a[cut:]
                else:
                    b = np.concatenate(chunk[a_end:])
                a, b = _truncate_pair(a, b, max_tokens, rng)
                if len(a) and len(b):
                    yield a, b, is_random
                chunk, length = [], 0
            i += 1


def packed_instances(
    docs: list[list[np.ndarray]],
    max_seq_length: int,
    short_seq_prob: float,
    sep_id: int,
    rng: random.Random,
):
    """Yield (tokens, None, None): contiguous sentences, documents joined by [SEP]."""
    max_tokens = max_seq_length - 2

    def new_target():
        return rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens

    stream = chain.from_iterable(
        chain(doc, [np.array([sep_id])] if k < len(docs) - 1 else []) for k, doc in enumerate(docs)
    )
    buf, length, target = [], 0, new_target()
    for sent in stream:
        while len(sent):
            take = sent[: target - length]
            buf.append(take)
            length += len(take)
            sent = sent[len(take) :]
            if length >= target:
                yield np.concatenate(buf), None, None
                buf, length, target = [], 0, new_target()
    if length:
        yield np.concatenate(buf), None, None


# ----------------------------------------------------------------------------- workers

_W: dict = {}


def _init_worker(cfg: PretrainDataConfig, tokenizer_path: str, single_process: bool) -> None:
    if not single_process:
        # One Rayon thread per worker process: the processes already fill the cores.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_path)
    _W.update(cfg=cfg, tok=tok, masker=Masker.from_vocab(tok.get_vocab(), cfg.masking))


def _build_shard(job: tuple[str, int, str, str]) -> dict:
    """Build one corpus shard into ``part`` (a folder of .npy files); return its counts."""
    split, shard_idx, shard_path, part = job
    cfg: PretrainDataConfig = _W["cfg"]
    tok, masker = _W["tok"], _W["masker"]
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    docs = encode_documents(tok, read_documents(Path(shard_path)))
    seqs, bounds, nsp = [], [], []
    for dupe in range(cfg.dupe_factor):
        # String seeds hash with SHA-512: stable across processes and Python runs.
        rng = random.Random(f"{cfg.seed}/{split}/{shard_idx}/{dupe}")
        if cfg.nsp:
            gen = nsp_instances(docs, cfg.max_seq_length, cfg.short_seq_prob, rng)
        else:
            gen = packed_instances(docs, cfg.max_seq_length, cfg.short_seq_prob, sep_id, rng)
        for a, b, is_random in gen:
            if b is None:
                seqs.append(np.concatenate(([cls_id], a, [sep_id])))
                bounds.append(len(a) + 2)
                nsp.append(-1)
            else:
                seqs.append(np.concatenate(([cls_id], a, [sep_id], b, [sep_id])))
                bounds.append(len(a) + 2)
                nsp.append(int(is_random))
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    ids = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
    out = {
        "input_ids": ids,
        "lengths": lengths,
        "type_boundary": np.array(bounds, dtype=np.int32),
        "nsp_labels": np.array(nsp, dtype=np.int8),
    }
    if cfg.masking_mode == "static":
        # Each dupe copy is a separate instance with its own mask.
        mask_rng = np.random.default_rng([cfg.seed, SPLITS.index(split), shard_idx])
        out["input_ids"], out["mlm_labels"] = masker.mask_instances(
            ids, lengths, tok.token_to_id("[PAD]"), cfg.max_seq_length, mask_rng
        )
    Path(part).mkdir(parents=True)
    for name, arr in out.items():
        np.save(Path(part) / f"{name}.npy", arr)
    return {
        "part": part,
        "instances": len(lengths),
        "tokens": int(lengths.sum()),
        "random_next": int((out["nsp_labels"] == 1).sum()),
        "documents": len(docs),
    }


# ------------------------------------------------------------------------------- stage


def build_pretrain_data(
    cfg: PretrainDataConfig, corpus_dir: str | Path, tokenizer_dir: str | Path, out_dir: str | Path
) -> dict:
    """Run the whole stage; returns the stats dict (also what pretrain_data_stats.json holds)."""
    from tokenizers import Tokenizer

    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    tok_path = Path(tokenizer_dir) / "tokenizer.json"
    tok = Tokenizer.from_file(str(tok_path))
    vocab_size = tok.get_vocab_size()
    dtype = array_dtype(vocab_size)
    stats: dict = {}
    with atomic_dir(out_dir) as tmp:
        jobs = []
        for split in SPLITS:
            shards = shard_files(corpus_dir, split)
            if split == "train" and not shards:
                raise MissingInputError(
                    f"{corpus_dir / split}: no corpus shards; run the corpus stage"
                )
            jobs += [
                (split, k, str(p), str(tmp / "parts" / f"{split}-{k:05d}"))
                for k, p in enumerate(shards)
            ]
        results = list(
            ordered_map(
                _build_shard,
                jobs,
                cfg.num_workers,
                _init_worker,
                (cfg, str(tok_path), cfg.num_workers <= 1),
                max_in_flight=cfg.num_workers,
            )
        )
        for split in SPLITS:
            parts = [r for r, j in zip(results, jobs) if j[0] == split and r["instances"]]
            n = sum(p["instances"] for p in parts)
            tokens = sum(p["tokens"] for p in parts)
            if parts:
                concat_parts(parts, tmp / split, dtype)
            stats[split] = {
                "instances": n,
                "tokens": tokens,
                "documents": sum(p["documents"] for p in parts),
                "mean_length": tokens / n if n else None,
                "padding_fraction": 1 - tokens / (n * cfg.max_seq_length) if n else None,
                "random_next_fraction": (
                    sum(p["random_next"] for p in parts) / n if n and cfg.nsp else None
                ),
            }
        if stats["train"]["instances"] == 0:
            raise InputError("pretrain_data: no training instances; is the corpus too small?")
        shutil.rmtree(tmp / "parts")
        meta = {
            "format_version": FORMAT_VERSION,
            "vocab_size": vocab_size,
            "dtype": np.dtype(dtype).name,
            "special_ids": {
                t: tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
            },
            "tokenizer_sha256": hashlib.sha256(tok_path.read_bytes()).hexdigest(),
            "config": cfg.model_dump(mode="json", exclude={"num_workers"}),  # not in the bytes
            "splits": stats,
        }
        write_json(tmp / "meta.json", meta)
        first = PretrainArrays(tmp, "train")[0]
        log.info("pretrain_data: first training instance:\n%s", describe_instance(tok, first))
    return stats
