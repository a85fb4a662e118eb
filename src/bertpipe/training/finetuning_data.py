"""The fine-tuning LightningDataModule: one task's train and dev splits, encoded by its kind.

Owns which examples a run sees: ``max_train_examples`` takes a fixed subset (seed 0,
whatever the run's seed) so runs compare on the same data; ``max_eval_examples``
keeps the first dev rows; training batches group similar lengths (``group_by_length``),
dev batches keep the file order; both pack where the network takes packed rows. Encoding
and collation are the task kind's (``tasks/kinds.py``); this module only loads, subsets and
batches.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from bertpipe.config import FinetuneHParams
from bertpipe.errors import InputError
from bertpipe.tasks.kinds import Encoded
from bertpipe.tasks.spec import TaskSpec


class LengthGroupedBatchSampler:
    """Training batches of similar lengths, every example exactly once per epoch.

    Each epoch (seeded by ``seed`` and the epoch number, so reproducible): a random
    permutation is cut into groups of ``group_batches`` batches; each group is sorted
    by length (longest first) and cut into batches; the batches are shuffled. One batch
    per epoch may be short (the last group's last). The padding computed falls to that of sorted data,
    while batches still mix examples from the whole training set (as Hugging Face's
    ``group_by_length``).
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_batches: int = 50):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.group = batch_size, seed, group_batches * batch_size
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        perm = rng.permutation(len(self.lengths))
        batches = []
        for start in range(0, len(perm), self.group):
            group = perm[start : start + self.group]
            group = group[np.argsort(-self.lengths[group], kind="stable")]
            batches += [
                group[i : i + self.batch_size] for i in range(0, len(group), self.batch_size)
            ]
        return [batches[i].tolist() for i in rng.permutation(len(batches))]

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        yield from self.batches(epoch)


class TaskDataModule(L.LightningDataModule):
    """Train and dev data of one task, encoded with ``tokenizer``.

    After ``setup()``: ``train`` and ``dev`` (``tasks.kinds.Encoded``) and
    ``skipped`` (counts of examples left out and why, over both splits).
    """

    def __init__(self, spec: TaskSpec, tokenizer, hp: FinetuneHParams, seed: int):
        super().__init__()
        self.spec, self.tok, self.hp, self.seed = spec, tokenizer, hp, seed
        self.pad_id = tokenizer.token_to_id("[PAD]")
        self.skipped: dict[str, int] = {}
        self.sizes: dict[str, tuple[int, int]] = {}
        """split -> (examples used, examples in the split)"""
        self.fingerprints: dict[str, str] = {}
        """split -> the ``datasets`` content fingerprint of the examples used"""
        self.pack_into: int | None = None
        """The row capacity batches pack into, set for the run's network
        (``data.packing.fine_tuning_capacity``); None: padded batches."""

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train"):
            return
        train = self.spec.load("train")
        self.sizes["train"] = (len(train), len(train))
        if self.hp.max_train_examples is not None and self.hp.max_train_examples < len(train):
            train = train.shuffle(seed=0).select(range(self.hp.max_train_examples))
            self.sizes["train"] = (len(train), self.sizes["train"][1])
        self.fingerprints["train"] = train._fingerprint
        self.train = self._encode(train, train=True)
        self.dev = self.encode_dev("dev")
        if not self.train.rows:
            raise InputError(f"task {self.spec.name}: no training examples left ({self.skipped})")

    def _encode(self, ds, train: bool) -> Encoded:
        encoded = self.spec.kind.encode(self.tok, ds, self.hp, train)
        for k, v in encoded.skipped.items():
            self.skipped[k] = self.skipped.get(k, 0) + v
        return encoded

    def encode_dev(self, split: str) -> Encoded:
        """A dev split (``dev``, or an extra one such as MNLI's ``dev_mismatched``), encoded."""
        dev = self.spec.load(split)
        self.sizes[split] = (len(dev), len(dev))
        if self.hp.max_eval_examples is not None and self.hp.max_eval_examples < len(dev):
            dev = dev.select(range(self.hp.max_eval_examples))
            self.sizes[split] = (len(dev), self.sizes[split][1])
        self.fingerprints[split] = dev._fingerprint
        return self._encode(dev, train=False)

    def collate(self, rows: list[dict]) -> dict:
        """The kind's batch (``TaskKind.batch``), packed into rows of at most ``pack_into``."""
        return self.spec.kind.batch(rows, self.pad_id, self.pack_into)

    def loader(self, rows: list[dict], shuffle: bool = False) -> DataLoader:
        if shuffle and self.hp.group_by_length:
            lengths = [len(r["input_ids"]) for r in rows]
            sampler = LengthGroupedBatchSampler(lengths, self.hp.batch_size, self.seed)
            return DataLoader(rows, batch_sampler=sampler, collate_fn=self.collate)  # type: ignore[arg-type]
        return DataLoader(
            rows,  # type: ignore[arg-type]  # a list is a map-style dataset
            batch_size=self.hp.batch_size,
            shuffle=shuffle,
            collate_fn=self.collate,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.train.rows, True)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.dev.rows)
