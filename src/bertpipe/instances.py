"""Pretraining instances: NSP sentence pairs or packed MLM sequences, as memory-mapped arrays.

Owns the ``pretrain_data`` output format and the algorithm that fills it.
Output, per split (``train``, ``valid``)::

    <out>/<split>/input_ids.npy      uint16 (vocab <= 65535) or uint32, all instances back to back
    <out>/<split>/offsets.npy        int64 [n + 1]; instance i is input_ids[offsets[i]:offsets[i+1]]
    <out>/<split>/type_boundary.npy  int32 [n]; token_type_ids are 1 from this position on
    <out>/<split>/nsp_labels.npy     int8  [n]; 1 = B is a random segment, 0 = actual next, -1 = no NSP
    <out>/<split>/mlm_labels.npy     int32, aligned with input_ids (static masking only; -100 = none)
    <out>/meta.json                  vocabulary, special ids, the masking recipe, counts

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
import json
import logging
import os
import random
import shutil
from itertools import chain
from pathlib import Path

import numpy as np

from bertpipe.config import PretrainDataConfig
from bertpipe.masking import IGNORE_INDEX, Masker
from bertpipe.outputs import atomic_dir, write_json
from bertpipe.parallel import ordered_map

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "valid")


# ----------------------------------------------------------------------------- reading


def read_documents(path: Path) -> list[list[str]]:
    """A corpus shard: one sentence per line, documents separated by blank lines."""
    docs, cur = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                cur.append(line)
            elif cur:
                docs.append(cur)
                cur = []
    if cur:
        docs.append(cur)
    return docs


def encode_documents(tok, docs: list[list[str]]) -> list[list[np.ndarray]]:
    """Token ids per sentence per document (no special tokens)."""
    flat = list(chain.from_iterable(docs))
    encodings = tok.encode_batch(flat, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(flat))
    ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int64,
                      count=int(lengths.sum()))
    sentences = np.split(ids, np.cumsum(lengths)[:-1]) if len(flat) else []
    out, i = [], 0
    for doc in docs:
        out.append([s for s in sentences[i:i + len(doc)] if len(s)])
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


def nsp_instances(docs: list[list[np.ndarray]], max_seq_length: int, short_seq_prob: float,
                  rng: random.Random):
    """Yield (tokens_a, tokens_b, is_random_next) for every document, BERT-style."""
    max_tokens = max_seq_length - 3
    if len(docs) < 2:
        raise ValueError("NSP needs at least two documents per corpus shard; "
                         "add text, or set pretrain_data.nsp: false")
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


def packed_instances(docs: list[list[np.ndarray]], max_seq_length: int, short_seq_prob: float,
                     sep_id: int, rng: random.Random):
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
            sent = sent[len(take):]
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
    out = {"input_ids": ids, "lengths": lengths, "type_boundary": np.array(bounds, dtype=np.int32),
           "nsp_labels": np.array(nsp, dtype=np.int8)}
    if cfg.masking_mode == "static":
        out["input_ids"], out["mlm_labels"] = _static_masks(
            ids, lengths, masker, tok.token_to_id("[PAD]"), cfg.seed, split, shard_idx,
            cfg.max_seq_length)
    Path(part).mkdir(parents=True)
    for name, arr in out.items():
        np.save(Path(part) / f"{name}.npy", arr)
    return {"part": part, "instances": len(lengths), "tokens": int(lengths.sum()),
            "random_next": int((out["nsp_labels"] == 1).sum()), "documents": len(docs)}


def _static_masks(ids, lengths, masker: Masker, pad_id: int, seed: int, split: str,
                  shard_idx: int, T: int):
    """Mask every instance once (each dupe copy is a separate instance with its own mask)."""
    rng = np.random.default_rng([seed, SPLITS.index(split), shard_idx])
    masked, labels = ids.copy(), np.full(len(ids), IGNORE_INDEX, dtype=np.int32)
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    for start in range(0, len(lengths), 1024):
        stop = min(start + 1024, len(lengths))
        n = stop - start
        batch = np.full((n, T), pad_id, dtype=np.int64)  # [PAD] is never masked
        valid = np.arange(T)[None, :] < lengths[start:stop, None]
        batch[valid] = ids[offsets[start]:offsets[stop]]
        corrupted, lab = masker(batch, rng)
        masked[offsets[start]:offsets[stop]] = corrupted[valid]
        labels[offsets[start]:offsets[stop]] = lab[valid]
    return masked, labels


# ------------------------------------------------------------------------------- stage


def _dtype(vocab_size: int):
    return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32


def _concat_parts(parts: list[dict], folder: Path, dtype) -> None:
    """Stream the per-shard parts into one array per field, in shard order."""
    folder.mkdir(parents=True)
    total_tokens = sum(p["tokens"] for p in parts)
    names = ["input_ids"] + (["mlm_labels"] if (Path(parts[0]["part"]) / "mlm_labels.npy").exists()
                             else [])
    for name in names:
        arr_dtype = dtype if name == "input_ids" else np.int32
        out = np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=arr_dtype,
                                        shape=(total_tokens,))
        pos = 0
        for p in parts:
            chunk = np.load(Path(p["part"]) / f"{name}.npy")
            out[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
        out.flush()
        del out
    lengths = np.concatenate([np.load(Path(p["part"]) / "lengths.npy") for p in parts])
    np.save(folder / "offsets.npy", np.concatenate(([0], np.cumsum(lengths))).astype(np.int64))
    for name in ("type_boundary", "nsp_labels"):
        np.save(folder / f"{name}.npy",
                np.concatenate([np.load(Path(p["part"]) / f"{name}.npy") for p in parts]))


def build_pretrain_data(cfg: PretrainDataConfig, corpus_dir: str | Path, tokenizer_dir: str | Path,
                        out_dir: str | Path) -> dict:
    """Run the whole stage; returns the stats dict (also what pretrain_data_stats.json holds)."""
    from tokenizers import Tokenizer

    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    tok_path = Path(tokenizer_dir) / "tokenizer.json"
    tok = Tokenizer.from_file(str(tok_path))
    vocab_size = tok.get_vocab_size()
    dtype = _dtype(vocab_size)
    stats: dict = {}
    with atomic_dir(out_dir) as tmp:
        jobs = []
        for split in SPLITS:
            shards = sorted((corpus_dir / split).glob("shard-*.txt"))
            if split == "train" and not shards:
                raise FileNotFoundError(f"{corpus_dir / split}: no corpus shards; run the corpus stage")
            jobs += [(split, k, str(p), str(tmp / "parts" / f"{split}-{k:05d}"))
                     for k, p in enumerate(shards)]
        results = list(ordered_map(_build_shard, jobs, cfg.num_workers, _init_worker,
                                   (cfg, str(tok_path), cfg.num_workers <= 1),
                                   max_in_flight=cfg.num_workers))
        for split in SPLITS:
            parts = [r for r, j in zip(results, jobs) if j[0] == split and r["instances"]]
            n = sum(p["instances"] for p in parts)
            tokens = sum(p["tokens"] for p in parts)
            if parts:
                _concat_parts(parts, tmp / split, dtype)
            stats[split] = {
                "instances": n, "tokens": tokens,
                "documents": sum(p["documents"] for p in parts),
                "mean_length": tokens / n if n else None,
                "padding_fraction": 1 - tokens / (n * cfg.max_seq_length) if n else None,
                "random_next_fraction": (sum(p["random_next"] for p in parts) / n
                                         if n and cfg.nsp else None),
            }
        if stats["train"]["instances"] == 0:
            raise ValueError("pretrain_data: no training instances; is the corpus too small?")
        shutil.rmtree(tmp / "parts")
        meta = {
            "format_version": FORMAT_VERSION,
            "vocab_size": vocab_size,
            "dtype": np.dtype(dtype).name,
            "special_ids": {t: tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                            "[MASK]")},
            "tokenizer_sha256": hashlib.sha256(tok_path.read_bytes()).hexdigest(),
            "config": cfg.model_dump(mode="json", exclude={"num_workers"}),  # not in the bytes
            "splits": stats,
        }
        write_json(tmp / "meta.json", meta)
        first = PretrainArrays(tmp, "train")[0]
        log.info("pretrain_data: first training instance:\n%s", describe_instance(tok, first))
    return stats


# -------------------------------------------------------------------------------- read


class PretrainArrays:
    """Random access to one split of the ``pretrain_data`` output (memory-mapped)."""

    def __init__(self, folder: str | Path, split: str):
        folder = Path(folder)
        self.meta = json.loads((folder / "meta.json").read_text())
        base = folder / split
        if not (base / "offsets.npy").exists():
            raise FileNotFoundError(f"{base}: no instances for split {split!r}")
        self.input_ids = np.load(base / "input_ids.npy", mmap_mode="r")
        self.offsets = np.load(base / "offsets.npy")
        self.type_boundary = np.load(base / "type_boundary.npy")
        self.nsp_labels = np.load(base / "nsp_labels.npy")
        labels = base / "mlm_labels.npy"
        self.mlm_labels = np.load(labels, mmap_mode="r") if labels.exists() else None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> dict:
        lo, hi = self.offsets[i], self.offsets[i + 1]
        item = {"input_ids": np.asarray(self.input_ids[lo:hi], dtype=np.int64),
                "type_boundary": int(self.type_boundary[i]), "nsp_label": int(self.nsp_labels[i])}
        if self.mlm_labels is not None:
            item["mlm_labels"] = np.asarray(self.mlm_labels[lo:hi], dtype=np.int64)
        return item


def describe_instance(tok, item: dict) -> str:
    """A human-readable view: segments, the NSP label and (static mode) what is masked."""
    tokens = [tok.id_to_token(int(i)) for i in item["input_ids"]]
    if "mlm_labels" in item:
        tokens = [f"{t}<{tok.id_to_token(int(lab))}>" if lab != IGNORE_INDEX else t
                  for t, lab in zip(tokens, item["mlm_labels"])]
    b = item["type_boundary"]
    nsp = {1: "random next", 0: "actual next", -1: "no NSP"}[item["nsp_label"]]
    return (f"  segment A: {' '.join(tokens[:b])}\n  segment B: {' '.join(tokens[b:])}\n"
            f"  label: {nsp}")
