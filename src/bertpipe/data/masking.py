"""Masked-LM corruption: choose 15% of tokens, then 80% [MASK] / 10% random / 10% kept.

Owns the one masking implementation, used both for static masks written by
``pretrain_data`` and for dynamic masks drawn per batch by the pretraining
collator. Vectorised over a padded (B, T) batch with a numpy Generator, so the
same generator state gives the same masks (resume and reproducibility).

Rules (BERT's ``create_pretraining_data.py``, with the deviations noted):

* eligible = every token except [PAD] [CLS] [SEP] [MASK] ([UNK] stays eligible,
  as in BERT);
* per sequence, ``k = min(max_predictions_per_seq, max(1, round(p * n_eligible)))``
  positions are chosen uniformly without replacement. Deviation: BERT counts the
  special tokens in n; we count only eligible tokens, so the rate is exactly p;
* whole-word mode chooses words in random order (a word = a token and its ``##``
  continuations) while the total stays <= k;
* each chosen token: [MASK] with ``mask_token_prob``, a random token with
  ``random_token_prob``, else unchanged. Deviation: the random token is drawn from
  non-special tokens only (BERT could insert [CLS] or [PAD]);
* labels are the original ids at chosen positions and -100 elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bertpipe.config import MaskingConfig
from bertpipe.labels import IGNORE_INDEX

NON_MASKABLE = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class Masker:
    """Masks batches of token ids for one vocabulary and one MaskingConfig."""

    cfg: MaskingConfig
    mask_id: int
    not_eligible: np.ndarray
    """bool[vocab]: tokens never chosen for prediction."""
    continuation: np.ndarray
    """bool[vocab]: ``##`` word pieces (whole-word masking)."""
    random_pool: np.ndarray
    """Token ids a chosen token may be replaced with."""

    @classmethod
    def from_vocab(cls, vocab: dict[str, int], cfg: MaskingConfig) -> Masker:
        size = max(vocab.values()) + 1
        not_eligible = np.zeros(size, dtype=bool)
        continuation = np.zeros(size, dtype=bool)
        for token, i in vocab.items():
            continuation[i] = token.startswith("##")
        for token in NON_MASKABLE:
            not_eligible[vocab[token]] = True
        specials = {vocab[t] for t in (*NON_MASKABLE, "[UNK]")}
        # [unusedN] slots of Google's vocabularies are never real text either.
        specials |= {i for t, i in vocab.items() if t.startswith("[unused")}
        pool = np.array(sorted(set(range(size)) - specials), dtype=np.int64)
        return cls(cfg, vocab["[MASK]"], not_eligible, continuation, pool)

    def __call__(
        self, input_ids: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mask a (B, T) integer batch; returns (corrupted ids, labels) as int64 arrays."""
        ids = np.asarray(input_ids, dtype=np.int64)
        B, T = ids.shape
        eligible = ~self.not_eligible[ids]  # (B, T)
        n_eligible = eligible.sum(axis=1)
        k = np.minimum(
            self.cfg.max_predictions_per_seq,
            np.maximum(1, np.rint(n_eligible * self.cfg.mlm_probability)),
        ).astype(np.int64)
        k = np.where(n_eligible > 0, k, 0)

        scores = rng.random((B, T))
        positions = np.broadcast_to(np.arange(T), (B, T))
        rows = np.arange(B)[:, None]
        if self.cfg.whole_word:
            # A word starts at every eligible non-## token; its pieces share the start's score.
            starts = ~(self.continuation[ids] & eligible) | ~eligible
            start_idx = np.maximum.accumulate(np.where(starts, positions, 0), axis=1)  # (B, T)
            scores = scores[rows, start_idx]
        scores = np.where(eligible, scores, 2.0)  # ineligible sort last
        order = np.argsort(scores, axis=1, kind="stable")  # a word's pieces stay adjacent
        rank = np.empty_like(order)
        rank[rows, order] = positions
        if self.cfg.whole_word:
            word_key = rows * T + start_idx
            word_len = np.bincount(word_key.ravel(), minlength=B * T)[word_key]
            last_rank = rank[rows, start_idx] + word_len - 1
            chosen = eligible & (last_rank < k[:, None])
        else:
            chosen = eligible & (rank < k[:, None])

        u = rng.random((B, T))
        p_mask, p_rand = self.cfg.mask_token_prob, self.cfg.random_token_prob
        to_mask = chosen & (u < p_mask)
        to_rand = chosen & (u >= p_mask) & (u < p_mask + p_rand)
        corrupted = ids.copy()
        corrupted[to_mask] = self.mask_id
        corrupted[to_rand] = self.random_pool[
            rng.integers(0, len(self.random_pool), int(to_rand.sum()))
        ]
        labels = np.where(chosen, ids, IGNORE_INDEX)
        return corrupted, labels

    def mask_instances(
        self,
        ids: np.ndarray,
        lengths: np.ndarray,
        pad_id: int,
        max_length: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Static masking: mask instances stored back to back (``lengths`` each) once, in blocks
        of 1,024 padded to ``max_length``; returns (corrupted ids, int32 labels), both flat."""
        masked, labels = ids.copy(), np.full(len(ids), IGNORE_INDEX, dtype=np.int32)
        offsets = np.concatenate(([0], np.cumsum(lengths)))
        for start in range(0, len(lengths), 1024):
            stop = min(start + 1024, len(lengths))
            batch = np.full(
                (stop - start, max_length), pad_id, dtype=np.int64
            )  # [PAD] is never masked
            valid = np.arange(max_length)[None, :] < lengths[start:stop, None]
            batch[valid] = ids[offsets[start] : offsets[stop]]
            corrupted, lab = self(batch, rng)
            masked[offsets[start] : offsets[stop]] = corrupted[valid]
            labels[offsets[start] : offsets[stop]] = lab[valid]
        return masked, labels
