"""The pretraining LightningDataModule: the ``pretrain_data`` arrays as resumable, masked batches.

Owns how the ``pretrain_data`` arrays become training batches: a resumable,
rank-sharded batch sampler (its position is saved in every checkpoint, so a
resumed run continues mid-epoch without replaying consumed batches), dynamic
masking in the collator (seeded by epoch and batch, so masks are reproducible
and identical after a resume), and padding to a multiple of 8 or, with ``pack_capacity`` (``pretrain.packing``), packing
several instances per row (``data/packing.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bertpipe.config import MaskingConfig
from bertpipe.data.masking import Masker
from bertpipe.data.packing import pack_batch
from bertpipe.data.pretrain_format import PretrainArrays
from bertpipe.errors import InputError
from bertpipe.labels import IGNORE_INDEX


class ResumableBatchSampler:
    """Shuffled batches of (epoch, index) pairs, sharded by rank; resumable mid-epoch.

    The order is a function of (seed, epoch) only. ``resume(epoch, batches_done)``
    makes the next iteration of that epoch skip the batches already trained on.
    ``len()`` is always the full epoch, which is what Lightning's progress counters expect.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ):
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, batches_done: int) -> None:
        self._resume = (epoch, batches_done)

    def _indices(self) -> np.ndarray:
        idx = (
            np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
            if self.shuffle
            else np.arange(self.n)
        )
        per_rank = self.n // self.world_size
        return idx[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __len__(self) -> int:
        per_rank = self.n // self.world_size
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def __iter__(self):
        idx = self._indices()
        skip = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            skip = self._resume[1]
        self._resume = None
        for b in range(skip, len(self)):
            yield [
                (self.epoch, int(i)) for i in idx[b * self.batch_size : (b + 1) * self.batch_size]
            ]


class InstanceDataset(Dataset):
    """Items of one split; indexed by (epoch, index) so the collator can seed its masks."""

    def __init__(self, arrays: PretrainArrays):
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (0, key)
        return {**self.arrays[i], "epoch": epoch, "index": i}


class PretrainCollator:
    """Pad, build token types and attention masks, and mask (dynamic) or use stored labels.

    With ``masked=False`` (the language-model objectives) the batch is the plain token
    sequences: statically masked data is restored to its original tokens from the stored labels.
    """

    def __init__(
        self,
        masker: Masker,
        pad_id: int,
        seed: int,
        pad_to_multiple_of: int = 8,
        with_nsp: bool = True,
        masked: bool = True,
        pack_capacity: int | None = None,
    ):
        self.masker, self.pad_id, self.seed = masker, pad_id, seed
        self.multiple, self.with_nsp, self.masked = pad_to_multiple_of, with_nsp, masked
        self.pack_capacity = pack_capacity

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        B = len(items)
        T = max(len(x["input_ids"]) for x in items)
        T = -(-T // self.multiple) * self.multiple
        ids = np.full((B, T), self.pad_id, dtype=np.int64)
        types = np.zeros((B, T), dtype=np.int64)
        attn = np.zeros((B, T), dtype=np.int64)
        static = "mlm_labels" in items[0]
        labels = np.full((B, T), IGNORE_INDEX, dtype=np.int64)
        for r, x in enumerate(items):
            n = len(x["input_ids"])
            ids[r, :n] = x["input_ids"]
            types[r, x["type_boundary"] : n] = 1
            attn[r, :n] = 1
            if static:
                labels[r, :n] = x["mlm_labels"]
        if not self.masked:
            if static:
                ids = np.where(labels != IGNORE_INDEX, labels, ids)
            return {
                "input_ids": torch.from_numpy(ids),
                "token_type_ids": torch.from_numpy(types),
                "attention_mask": torch.from_numpy(attn),
            }
        if not static:
            # One generator per batch, keyed by its content's identity: the same batch gets the
            # same masks in any run, before or after a resume, on any number of workers.
            rng = np.random.default_rng(
                [self.seed, items[0]["epoch"], *(x["index"] for x in items)]
            )
            ids, labels = self.masker(ids, rng)
        arrays = {
            "input_ids": ids,
            "token_type_ids": types,
            "attention_mask": attn,
            "mlm_labels": labels,
        }
        if self.pack_capacity is not None:
            # Masked in the padded layout first: packed or not, an instance gets the same masks.
            lengths = np.array([len(x["input_ids"]) for x in items])
            fill = {"input_ids": self.pad_id, "token_type_ids": 0, "attention_mask": 0}
            arrays = pack_batch(
                arrays, lengths, self.pack_capacity, {**fill, "mlm_labels": IGNORE_INDEX}
            )
        batch = {k: torch.from_numpy(v) for k, v in arrays.items()}
        if self.with_nsp:
            batch["nsp_labels"] = torch.tensor([x["nsp_label"] for x in items], dtype=torch.long)
        return batch


class PretrainDataModule(L.LightningDataModule):
    """Batches of the ``pretrain_data`` output: masked for MLM (+ NSP), plain for the language models."""

    def __init__(
        self,
        data_dir: str | Path,
        vocab: dict[str, int],
        batch_size: int,
        seed: int,
        num_workers: int = 0,
        with_nsp: bool = True,
        masked: bool = True,
        packing: bool = False,
        packed_length: int | None = None,
        mlm_probability: float | None = None,
    ):
        """``packing``: rows of ``packed_length`` tokens (default 4 x the data's
        max_seq_length); ``mlm_probability`` replaces the data's masking rate (dynamic)."""
        super().__init__()
        self.data_dir = Path(data_dir)
        self.masked = masked
        self.meta = json.loads((self.data_dir / "meta.json").read_text())
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.with_nsp = with_nsp
        if mlm_probability is not None:  # what the batches get, in what the stage reads
            config = self.meta["config"]
            masking_meta = {**config["masking"], "mlm_probability": mlm_probability}
            self.meta = {**self.meta, "config": {**config, "masking": masking_meta}}
        masking = MaskingConfig.model_validate(self.meta["config"]["masking"])
        self.masker = Masker.from_vocab(vocab, masking)
        self.pad_id = self.meta["special_ids"]["[PAD]"]
        seq = int(self.meta["config"]["max_seq_length"])
        if packed_length is not None and packed_length < seq:
            raise InputError(
                f"pretrain.packed_length ({packed_length}) is below the data's max_seq_length "
                f"({seq}): an instance would not fit a row; raise it or set it to null"
            )
        self.pack_capacity = (packed_length or 4 * seq) if packing else None
        self.train_sampler: ResumableBatchSampler | None = None
        self._pending_resume: tuple[int, int] | None = None

    @property
    def has_validation(self) -> bool:
        """Whether the data has a validation split (known before ``setup``)."""
        return (self.data_dir / "valid" / "offsets.npy").exists()

    def setup(self, stage: str | None = None) -> None:
        self.train_set = InstanceDataset(PretrainArrays(self.data_dir, "train"))
        self.val_set = (
            InstanceDataset(PretrainArrays(self.data_dir, "valid")) if self.has_validation else None
        )

    def _loader(self, dataset, sampler) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=PretrainCollator(
                self.masker,
                self.pad_id,
                self.seed,
                8,
                self.with_nsp,
                self.masked,
                self.pack_capacity,
            ),
            persistent_workers=self.num_workers > 0,
            # Its own generator: creating an iterator must not draw from the global RNG that
            # dropout uses, or a resumed run would diverge from an uninterrupted one.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer else 0
        world = self.trainer.world_size if self.trainer else 1
        self.train_sampler = ResumableBatchSampler(
            len(self.train_set), self.batch_size, self.seed, rank=rank, world_size=world
        )
        if self._pending_resume is not None:
            self.train_sampler.resume(*self._pending_resume)
            self._pending_resume = None
        return self._loader(self.train_set, self.train_sampler)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        rank = self.trainer.global_rank if self.trainer else 0
        world = self.trainer.world_size if self.trainer else 1
        sampler = ResumableBatchSampler(
            len(self.val_set),
            self.batch_size,
            self.seed,
            shuffle=False,
            rank=rank,
            world_size=world,
            drop_last=False,
        )
        return self._loader(self.val_set, sampler)

    # Saved in every Lightning checkpoint; restored before the train dataloader is built.
    def state_dict(self) -> dict:
        if self.trainer is None:
            return {}
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        # (Lightning's progress trackers are typed loosely: ``processed`` is always there in fit)
        done = progress.processed  # type: ignore[attr-defined]
        return {"epoch": self.trainer.current_epoch, "batches_done": done}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self._pending_resume = (state["epoch"], state["batches_done"])
            if self.train_sampler is not None:
                self.train_sampler.resume(*self._pending_resume)


def instances_in(batch: dict) -> int:
    """Instances in a padded or packed batch (a packed row holds several)."""
    return int(batch["cls_index"].numel()) if "cls_index" in batch else batch["input_ids"].shape[0]
