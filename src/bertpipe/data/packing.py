"""Padding-free batches: several instances per row, each attending only to itself.

Owns how a padded batch of instances becomes a packed one: which instances share
a row (first-fit decreasing into rows of ``capacity`` tokens, deterministic), and
the arrays a packed row needs so that the network computes for every instance
exactly what it computes for that instance alone in a padded batch:

* ``position_ids`` restart at 0 for each instance;
* ``instance_ids`` name the instance each position belongs to (-1 for padding):
  the encoders build their block-diagonal attention mask from it, so attention
  never crosses an instance boundary (padding attends only to padding);
* ``cls_index`` is the flat (row x width + position) index of each instance's first
  token, in the original instance order: NSP reads each instance's own [CLS];
* token types, MLM labels and the attention mask move with their tokens.

The same instances with the same masks give the same MLM and NSP losses packed or
padded (tests/test_packing.py); only the order of the masked positions differs.
"""

from __future__ import annotations

import numpy as np

PACKED_KEYS = ("position_ids", "instance_ids", "cls_index")
"""What a packed batch adds to a padded one; the networks that take packed rows accept them."""


def fine_tuning_capacity(hp, network) -> int | None:
    """The row capacity a fine-tuning run's batches, dev included, and ``bertpipe predict``'s
    pack into: ``hp.max_length`` when ``hp.packing`` is on and ``network``'s forward takes
    packed rows (the ``PACKED_KEYS``); None (padded batches) otherwise."""
    import inspect

    takes_packed = "instance_ids" in inspect.signature(network.forward).parameters
    return hp.max_length if hp.packing and takes_packed else None


def pack_rows(lengths: list[int] | np.ndarray, capacity: int) -> list[list[int]]:
    """First-fit decreasing: instance indices per row, no row over ``capacity`` tokens.

    Ties keep the original order, so the result depends on the lengths only."""
    lengths = np.asarray(lengths)
    if len(lengths) and lengths.max() > capacity:
        raise ValueError(
            f"an instance of {lengths.max()} tokens exceeds the row capacity {capacity}"
        )
    rows: list[list[int]] = []
    free: list[int] = []
    for i in np.argsort(-lengths, kind="stable"):
        n = int(lengths[i])
        for r, room in enumerate(free):
            if n <= room:
                rows[r].append(int(i))
                free[r] -= n
                break
        else:
            rows.append([int(i)])
            free.append(capacity - n)
    return rows


def row_width(rows: list[list[int]], lengths: np.ndarray, multiple: int = 8) -> int:
    """The width of packed ``rows``: the fullest row's tokens, rounded up to ``multiple``."""
    width = max(sum(int(lengths[i]) for i in row) for row in rows)
    return -(-width // multiple) * multiple


def pack_batch(
    arrays: dict[str, np.ndarray],
    lengths: np.ndarray,
    capacity: int,
    pad_values: dict[str, int],
    multiple: int = 8,
) -> dict[str, np.ndarray]:
    """Pack padded (B, T) arrays of instances ``lengths`` long into (R, T') rows, R <= B.

    ``pad_values`` gives each array's fill value. Returns the packed arrays plus
    ``position_ids``, ``instance_ids`` (R, T') and ``cls_index`` (B,)."""
    rows = pack_rows(lengths, capacity)
    width = row_width(rows, lengths, multiple)
    R = len(rows)
    out = {k: np.full((R, width), pad_values[k], dtype=v.dtype) for k, v in arrays.items()}
    positions = np.zeros((R, width), dtype=np.int64)
    instance = np.full((R, width), -1, dtype=np.int64)
    cls_index = np.zeros(len(lengths), dtype=np.int64)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            n = int(lengths[i])
            for k, v in arrays.items():
                out[k][r, at : at + n] = v[i, :n]
            positions[r, at : at + n] = np.arange(n)
            instance[r, at : at + n] = i
            cls_index[i] = r * width + at
            at += n
    out["position_ids"], out["instance_ids"], out["cls_index"] = positions, instance, cls_index
    return out


ATTENTION_COST_WIDTH = 256
"""A packed row of W tokens costs about ``W * (1 + W / ATTENTION_COST_WIDTH)`` token-steps: the
per-token matmuls, plus attention, which grows with the row. Fitted to forward + backward times
of MiniLM (H = 384) fine-tuning batches of CoLA and MRPC packed at 48 to 128 tokens a row
(docs/LOG.md, 2026-12-03)."""


def cheapest_capacity(lengths: np.ndarray, max_capacity: int, multiple: int = 8) -> int:
    """The row capacity, from the longest instance up to ``max_capacity`` in steps of
    ``multiple``, whose packing of ``lengths`` costs least by ``ATTENTION_COST_WIDTH``'s estimate.

    Short instances (CoLA's 11 tokens) packed into rows of 128 attend over 128 positions each:
    more attention work than the padded batch had. Narrower rows keep the padding out without
    that. Only speed depends on the choice: every instance computes the same either way."""
    first = -(-int(np.max(lengths)) // multiple) * multiple
    best, best_cost = max_capacity, float("inf")
    for capacity in [*range(first, max_capacity, multiple), max_capacity]:
        rows = pack_rows(lengths, capacity)
        width = row_width(rows, lengths, multiple)
        cost = len(rows) * width * (1 + width / ATTENTION_COST_WIDTH)
        if cost < best_cost:
            best, best_cost = capacity, cost
    return best


def pack_padded(batch: dict, max_capacity: int, pad_id: int) -> dict:
    """A padded (B, T) torch batch of examples (``input_ids``, ``token_type_ids``,
    ``attention_mask``, plus per-example targets such as ``labels``) as packed rows of at
    most ``max_capacity`` tokens (the cheapest capacity for these lengths); the targets stay
    one per example, in order."""
    lengths = batch["attention_mask"].sum(1).numpy()
    return pack_padded_at(batch, cheapest_capacity(lengths, max_capacity), pad_id)


def pack_padded_at(batch: dict, capacity: int, pad_id: int) -> dict:
    """``pack_padded`` into rows of at most ``capacity`` tokens, whatever the lengths."""
    import torch

    rows = ("input_ids", "token_type_ids", "attention_mask")
    packed = pack_batch(
        {k: batch[k].numpy() for k in rows},
        batch["attention_mask"].sum(1).numpy(),
        capacity,
        {"input_ids": pad_id, "token_type_ids": 0, "attention_mask": 0},
    )
    out = {k: v for k, v in batch.items() if k not in rows}
    return {**out, **{k: torch.from_numpy(v) for k, v in packed.items()}}


def padding_fraction(lengths: np.ndarray, width: int) -> float:
    """Share of a (len(lengths), width) padded batch that is padding."""
    return 1.0 - float(np.sum(lengths)) / (len(lengths) * width) if len(lengths) else 0.0
