"""The ``pretrain_data`` output format: memory-mapped token arrays, their writer and reader.

Per split (``train``, ``valid``)::

    <out>/<split>/input_ids.npy      uint16 (vocab <= 65535) or uint32, all instances back to back
    <out>/<split>/offsets.npy        int64 [n + 1]; instance i is input_ids[offsets[i]:offsets[i+1]]
    <out>/<split>/type_boundary.npy  int32 [n]; token_type_ids are 1 from this position on
    <out>/<split>/nsp_labels.npy     int8  [n]; 1 = B is a random segment, 0 = actual next, -1 = no NSP
    <out>/<split>/mlm_labels.npy     int32, aligned with input_ids (static masking only; -100 = none)
    <out>/meta.json                  vocabulary, special ids, the masking recipe, counts

Shards are built into parts (one folder of arrays per corpus shard) that
``concat_parts`` streams into the split's arrays in shard order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bertpipe.errors import MissingInputError
from bertpipe.labels import IGNORE_INDEX

FORMAT_VERSION = 1
SPLITS = ("train", "valid")


def array_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32


def concat_parts(parts: list[dict], folder: Path, dtype) -> None:
    """Stream the per-shard parts into one array per field, in shard order."""
    folder.mkdir(parents=True)
    total_tokens = sum(p["tokens"] for p in parts)
    names = ["input_ids"] + (
        ["mlm_labels"] if (Path(parts[0]["part"]) / "mlm_labels.npy").exists() else []
    )
    for name in names:
        arr_dtype = dtype if name == "input_ids" else np.int32
        out = np.lib.format.open_memmap(
            folder / f"{name}.npy", mode="w+", dtype=arr_dtype, shape=(total_tokens,)
        )
        pos = 0
        for p in parts:
            chunk = np.load(Path(p["part"]) / f"{name}.npy")
            out[pos : pos + len(chunk)] = chunk
            pos += len(chunk)
        out.flush()
        del out
    lengths = np.concatenate([np.load(Path(p["part"]) / "lengths.npy") for p in parts])
    np.save(folder / "offsets.npy", np.concatenate(([0], np.cumsum(lengths))).astype(np.int64))
    for name in ("type_boundary", "nsp_labels"):
        np.save(
            folder / f"{name}.npy",
            np.concatenate([np.load(Path(p["part"]) / f"{name}.npy") for p in parts]),
        )


class PretrainArrays:
    """Random access to one split of the ``pretrain_data`` output (memory-mapped)."""

    def __init__(self, folder: str | Path, split: str):
        folder = Path(folder)
        self.meta = json.loads((folder / "meta.json").read_text())
        base = folder / split
        if not (base / "offsets.npy").exists():
            raise MissingInputError(f"{base}: no instances for split {split!r}")
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
        item = {
            "input_ids": np.asarray(self.input_ids[lo:hi], dtype=np.int64),
            "type_boundary": int(self.type_boundary[i]),
            "nsp_label": int(self.nsp_labels[i]),
        }
        if self.mlm_labels is not None:
            item["mlm_labels"] = np.asarray(self.mlm_labels[lo:hi], dtype=np.int64)
        return item


def describe_instance(tok, item: dict) -> str:
    """A human-readable view: segments, the NSP label and (static mode) what is masked."""
    tokens = [tok.id_to_token(int(i)) for i in item["input_ids"]]
    if "mlm_labels" in item:
        tokens = [
            f"{t}<{tok.id_to_token(int(lab))}>" if lab != IGNORE_INDEX else t
            for t, lab in zip(tokens, item["mlm_labels"])
        ]
    b = item["type_boundary"]
    nsp = {1: "random next", 0: "actual next", -1: "no NSP"}[item["nsp_label"]]
    return (
        f"  segment A: {' '.join(tokens[:b])}\n  segment B: {' '.join(tokens[b:])}\n  label: {nsp}"
    )
