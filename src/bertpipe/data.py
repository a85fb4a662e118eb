"""LightningDataModules and collators.

Owns how the ``pretrain_data`` arrays become training batches: a resumable,
rank-sharded batch sampler (its position is saved in every checkpoint, so a
resumed run continues mid-epoch without replaying consumed batches), dynamic
masking in the collator (seeded by epoch and batch, so masks are reproducible
and identical after a resume), and padding to a multiple of 8.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bertpipe.config import MaskingConfig
from bertpipe.instances import PretrainArrays
from bertpipe.masking import IGNORE_INDEX, Masker


class ResumableBatchSampler:
    """Shuffled batches of (epoch, index) pairs, sharded by rank; resumable mid-epoch.

    The order is a function of (seed, epoch) only. ``resume(epoch, batches_done)``
    makes the next iteration of that epoch skip the batches already trained on.
    ``len()`` is always the full epoch, which is what Lightning's progress counters expect.
    """

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1, drop_last: bool = True):
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, batches_done: int) -> None:
        self._resume = (epoch, batches_done)

    def _indices(self) -> np.ndarray:
        idx = (np.random.default_rng([self.seed, self.epoch]).permutation(self.n) if self.shuffle
               else np.arange(self.n))
        per_rank = self.n // self.world_size
        return idx[self.rank * per_rank:(self.rank + 1) * per_rank]

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
            yield [(self.epoch, int(i)) for i in idx[b * self.batch_size:(b + 1) * self.batch_size]]


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
    """Pad, build token types and attention masks, and mask (dynamic) or use stored labels."""

    def __init__(self, masker: Masker, pad_id: int, seed: int, pad_to_multiple_of: int = 8,
                 with_nsp: bool = True):
        self.masker, self.pad_id, self.seed = masker, pad_id, seed
        self.multiple, self.with_nsp = pad_to_multiple_of, with_nsp

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        B = len(items)
        T = max(len(x["input_ids"]) for x in items)
        T = -(-T // self.multiple) * self.multiple
        ids = np.full((B, T), self.pad_id, dtype=np.int64)
        types = np.zeros((B, T), dtype=np.int64)
        attn = np.zeros((B, T), dtype=np.int64)
        static = "mlm_labels" in items[0]
        labels = np.full((B, T), IGNORE_INDEX, dtype=np.int64) if static else None
        for r, x in enumerate(items):
            n = len(x["input_ids"])
            ids[r, :n] = x["input_ids"]
            types[r, x["type_boundary"]:n] = 1
            attn[r, :n] = 1
            if static:
                labels[r, :n] = x["mlm_labels"]
        if not static:
            # One generator per batch, keyed by its content's identity: the same batch gets the
            # same masks in any run, before or after a resume, on any number of workers.
            rng = np.random.default_rng([self.seed, items[0]["epoch"], *(x["index"] for x in items)])
            ids, labels = self.masker(ids, rng)
        batch = {"input_ids": torch.from_numpy(ids), "token_type_ids": torch.from_numpy(types),
                 "attention_mask": torch.from_numpy(attn), "mlm_labels": torch.from_numpy(labels)}
        if self.with_nsp:
            batch["nsp_labels"] = torch.tensor([x["nsp_label"] for x in items], dtype=torch.long)
        return batch


class PretrainDataModule(L.LightningDataModule):
    """Batches of the ``pretrain_data`` output for MLM (+ NSP) training."""

    def __init__(self, data_dir: str | Path, vocab: dict[str, int], batch_size: int, seed: int,
                 num_workers: int = 0, with_nsp: bool = True):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.meta = json.loads((self.data_dir / "meta.json").read_text())
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.with_nsp = with_nsp
        masking = MaskingConfig.model_validate(self.meta["config"]["masking"])
        self.masker = Masker.from_vocab(vocab, masking)
        self.pad_id = self.meta["special_ids"]["[PAD]"]
        self.train_sampler: ResumableBatchSampler | None = None
        self._pending_resume: tuple[int, int] | None = None

    def setup(self, stage: str | None = None) -> None:
        self.train_set = InstanceDataset(PretrainArrays(self.data_dir, "train"))
        valid = self.data_dir / "valid" / "offsets.npy"
        self.val_set = InstanceDataset(PretrainArrays(self.data_dir, "valid")) if valid.exists() else None

    def _loader(self, dataset, sampler) -> DataLoader:
        return DataLoader(
            dataset, batch_sampler=sampler, num_workers=self.num_workers,
            collate_fn=PretrainCollator(self.masker, self.pad_id, self.seed, 8, self.with_nsp),
            persistent_workers=self.num_workers > 0,
            # Its own generator: creating an iterator must not draw from the global RNG that
            # dropout uses, or a resumed run would diverge from an uninterrupted one.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer else 0
        world = self.trainer.world_size if self.trainer else 1
        self.train_sampler = ResumableBatchSampler(len(self.train_set), self.batch_size, self.seed,
                                                   rank=rank, world_size=world)
        if self._pending_resume is not None:
            self.train_sampler.resume(*self._pending_resume)
            self._pending_resume = None
        return self._loader(self.train_set, self.train_sampler)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        rank = self.trainer.global_rank if self.trainer else 0
        world = self.trainer.world_size if self.trainer else 1
        sampler = ResumableBatchSampler(len(self.val_set), self.batch_size, self.seed, shuffle=False,
                                        rank=rank, world_size=world, drop_last=False)
        return self._loader(self.val_set, sampler)

    # Saved in every Lightning checkpoint; restored before the train dataloader is built.
    def state_dict(self) -> dict:
        if self.trainer is None:
            return {}
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": self.trainer.current_epoch, "batches_done": progress.processed}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self._pending_resume = (state["epoch"], state["batches_done"])
            if self.train_sampler is not None:
                self.train_sampler.resume(*self._pending_resume)


def pad_batch(rows: list[dict], pad_id: int, multiple: int = 8) -> dict[str, torch.Tensor]:
    """Pad encoded rows to the longest, rounded up to ``multiple``.

    Rows hold ``input_ids``, ``token_type_ids`` and any of: ``label`` (a class id or
    score -> ``labels``), ``tags`` (per-token targets, padded with -100 -> ``labels``),
    ``start_positions``/``end_positions`` and ``feature`` (SQuAD window index).
    """
    T = -(-max(len(r["input_ids"]) for r in rows) // multiple) * multiple
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    types = torch.zeros_like(ids)
    attn = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n], types[i, :n], attn[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["token_type_ids"]), 1
    batch = {"input_ids": ids, "token_type_ids": types, "attention_mask": attn}
    first = rows[0]
    if "label" in first:
        batch["labels"] = torch.tensor([r["label"] for r in rows])
    if "tags" in first:
        tags = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)
        for i, r in enumerate(rows):
            tags[i, :len(r["tags"])] = torch.tensor(r["tags"])
        batch["labels"] = tags
    for key in ("start_positions", "end_positions", "feature"):
        if key in first:
            batch[key] = torch.tensor([r[key] for r in rows])
    return batch


class TaskDataModule(L.LightningDataModule):
    """Train and dev data of one fine-tuning task (``tasks.spec.TaskSpec``), encoded with ``tokenizer``.

    ``max_train_examples`` takes a fixed subset (seed 0, whatever the run's seed) so
    runs compare on the same data; ``max_eval_examples`` keeps the first dev rows.
    After ``setup()``: ``train_rows``, ``dev_rows`` (encoded), ``dev_data`` (the raw
    dev Dataset), ``skipped`` (counts of rows left out and why) and, for QA,
    ``evaluator_inputs`` for ``tasks.metrics.SquadEvaluator``.
    """

    def __init__(self, spec, tokenizer, hp, seed: int):
        super().__init__()
        self.spec, self.tok, self.hp, self.seed = spec, tokenizer, hp, seed
        self.pad_id = tokenizer.token_to_id("[PAD]")
        self.skipped: dict[str, int] = {}

    def _encode(self, ds, train: bool) -> list[dict]:
        import copy

        tok = copy.deepcopy(self.tok)
        tok.no_padding()
        kind = self.spec.kind
        if kind == "qa":
            from bertpipe.tasks import squad

            tok.no_truncation()
            rows = ds.to_list()
            feats, skipped, offsets = squad.windows(tok, rows, self.hp.max_length, self.hp.doc_stride, train)
            for k, v in skipped.items():
                self.skipped[k] = self.skipped.get(k, 0) + v
            if not train:
                for i, f in enumerate(feats):
                    f["feature"] = i
                self.evaluator_inputs = (feats, rows, offsets)
            return feats
        tok.enable_truncation(self.hp.max_length)
        if kind == "token_classification":
            out = []
            for enc, tags in zip(tok.encode_batch(ds["tokens"], is_pretokenized=True), ds["tags"]):
                # The first sub-word of each word carries its tag; the rest and specials are ignored.
                seen, labels = set(), []
                for w in enc.word_ids:
                    labels.append(IGNORE_INDEX if w is None or w in seen else tags[w])
                    if w is not None:
                        seen.add(w)
                out.append({"input_ids": enc.ids, "token_type_ids": enc.type_ids, "tags": labels})
            return out
        texts = ds["text_a"] if not self.spec.pair else list(zip(ds["text_a"], ds["text_b"]))
        return [{"input_ids": e.ids, "token_type_ids": e.type_ids, "label": y}
                for e, y in zip(tok.encode_batch(texts), ds["label"])]

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_rows"):
            return
        train = self.spec.load("train")
        if self.hp.max_train_examples is not None and self.hp.max_train_examples < len(train):
            train = train.shuffle(seed=0).select(range(self.hp.max_train_examples))
        self.train_rows = self._encode(train, train=True)
        self.dev_data = self.load_dev("dev")
        self.dev_rows = self._encode(self.dev_data, train=False)
        if not self.train_rows:
            raise ValueError(f"task {self.spec.name}: no training examples left ({self.skipped})")

    def load_dev(self, split: str):
        dev = self.spec.load(split)
        if self.hp.max_eval_examples is not None and self.hp.max_eval_examples < len(dev):
            dev = dev.select(range(self.hp.max_eval_examples))
        return dev

    def loader(self, rows, shuffle: bool = False) -> DataLoader:
        return DataLoader(rows, batch_size=self.hp.batch_size, shuffle=shuffle,
                          collate_fn=lambda b: pad_batch(b, self.pad_id),
                          generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.train_rows, True)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.dev_rows)

    def predict_dataloader(self) -> DataLoader:
        return self.loader(self.dev_rows)
