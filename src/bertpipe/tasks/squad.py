"""SQuAD v1.1 / v2.0: data, windows over long contexts, span decoding and the official scores.

Owns
- the flattening of ``{"data": [{"title", "paragraphs": [{"context", "qas"}]}]}``
  into rows ``id, title, context, question, answers{text, answer_start}`` (the hub's
  schema); unanswerable v2.0 questions have empty answer lists;
- ``windows``: question + a window of the context per feature, consecutive windows
  sharing ``doc_stride`` tokens (the meaning transformers' ``run_qa.py`` gives it);
  the question is capped at 64 tokens as in the original ``run_squad.py``;
- ``decode``: n-best start/end candidates per window, spans of at most
  ``max_answer_length`` tokens, the best span over all windows of a question, and
  for v2.0 the no-answer score (null score minus best span score);
- the official evaluation (evaluate-v1.1.py / evaluate-v2.0.py rules), including
  v2.0's best no-answer threshold.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from bertpipe.data import catalog
from bertpipe.errors import InputError


def flatten(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        data = json.load(f)["data"]
    rows = []
    for article in data:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                rows.append(
                    {
                        "id": qa["id"],
                        "title": article["title"],
                        "context": para["context"],
                        "question": qa["question"],
                        "answers": {
                            "text": [a["text"] for a in qa["answers"]],
                            "answer_start": [a["answer_start"] for a in qa["answers"]],
                        },
                    }
                )
    return rows


AMBIGUOUS_IDS = "squad/v1.1/train_reconstructed.ambiguous_ids.tsv"
"""Mirror file listing the rebuilt v1.1 train questions whose answer position is a guess."""


def load_split(name: str, split: str, exclude_ambiguous: bool = False):
    """``name`` is ``squad`` (v1.1) or ``squad_v2``; returns a ``datasets.Dataset``.

    ``exclude_ambiguous`` drops the questions listed in the mirror's
    ``AMBIGUOUS_IDS`` file (rebuilt v1.1 train only; a no-op elsewhere).
    """
    spec = catalog.get_spec(name)
    root = catalog.mirror_root()
    if root is None:
        return catalog.load_spec_from_hub(spec, split, streaming=False)
    import datasets

    rows = []
    for path in catalog.mirror_files(spec, split, root):
        rows += flatten(path)
    ambiguous = root / AMBIGUOUS_IDS
    if exclude_ambiguous and name == "squad" and ambiguous.exists():
        with open(ambiguous, encoding="utf-8") as f:
            drop = {line.split("\t", 1)[0] for line in list(f)[1:]}
        rows = [r for r in rows if r["id"] not in drop]
    return datasets.Dataset.from_list(rows)


# ----------------------------------------------------------------------------- windows

MAX_QUERY_TOKENS = 64


def windows(
    tok, rows, max_length: int, doc_stride: int, train: bool
) -> tuple[list[dict], dict, list]:
    """Features for ``rows`` (SQuAD schema), counts of what was skipped, and the
    character offsets of each row's context tokens (for decoding).

    Each feature: ``input_ids``, ``token_type_ids``, ``example`` (row index),
    ``window_start`` (first context token of the window), ``context_offset``
    (position of that token in ``input_ids``). Training features also carry
    ``start_positions``/``end_positions`` (0, the [CLS], when the answer is not in
    the window or there is none). Training rows whose answer text is not at its
    ``answer_start`` in the context are skipped and counted.
    """
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    questions = tok.encode_batch([r["question"] for r in rows], add_special_tokens=False)
    contexts = tok.encode_batch([r["context"] for r in rows], add_special_tokens=False)
    features, skipped = [], {"answer_not_in_context": 0}
    for i, (row, q_enc, c_enc) in enumerate(zip(rows, questions, contexts)):
        q = q_enc.ids[:MAX_QUERY_TOKENS]
        avail = max_length - len(q) - 3  # [CLS] q [SEP] window [SEP]
        if avail <= doc_stride:
            raise InputError(
                f"max_length {max_length} leaves {avail} context tokens per window, not more "
                f"than doc_stride {doc_stride}; raise max_length or lower doc_stride"
            )
        span = None
        if train and row["answers"]["text"]:
            text, start_char = row["answers"]["text"][0], row["answers"]["answer_start"][0]
            if row["context"][start_char : start_char + len(text)] != text:
                skipped["answer_not_in_context"] += 1
                continue
            span = _char_span_to_tokens(c_enc.offsets, start_char, start_char + len(text))
        n, start = len(c_enc.ids), 0
        while True:
            end = min(start + avail, n)
            ids = [cls_id, *q, sep_id, *c_enc.ids[start:end], sep_id]
            feature = {
                "input_ids": ids,
                "token_type_ids": [0] * (len(q) + 2) + [1] * (end - start + 1),
                "example": i,
                "window_start": start,
                "context_offset": len(q) + 2,
            }
            if train:
                s = e = 0
                if span is not None and start <= span[0] and span[1] < end:
                    s, e = span[0] - start + len(q) + 2, span[1] - start + len(q) + 2
                feature.update(start_positions=s, end_positions=e)
            features.append(feature)
            if end == n:
                break
            start += avail - doc_stride
    return features, skipped, [c.offsets for c in contexts]


def _char_span_to_tokens(offsets, start_char: int, end_char: int) -> tuple[int, int]:
    """First and last context token overlapping [start_char, end_char)."""
    first = next(t for t, (s, e) in enumerate(offsets) if e > start_char)
    last = max(t for t, (s, e) in enumerate(offsets) if s < end_char)
    return first, max(first, last)


# ------------------------------------------------------------------------------ decoding


def decode(
    features: list[dict],
    start_logits,
    end_logits,
    rows,
    context_offsets: list,
    *,
    n_best: int,
    max_answer_length: int,
    spans: dict[str, tuple[int, float]] | None = None,
) -> tuple[dict[str, str], dict[str, float]]:
    """Best answer text per question id, and its no-answer score (null minus best span; v2.0).

    ``start_logits``/``end_logits`` are per feature (numpy arrays of the feature's
    length); ``context_offsets[example]`` are the context tokens' character offsets.
    ``spans``, when given, receives each answer's character start and score (start + end logit).
    """
    import numpy as np

    best: dict[int, tuple[float, str, int]] = {}
    null: dict[int, float] = {}
    for f, st, en in zip(features, start_logits, end_logits):
        ex, off0, w0 = f["example"], f["context_offset"], f["window_start"]
        n_ctx = len(f["input_ids"]) - off0 - 1
        null[ex] = min(null.get(ex, np.inf), float(st[0] + en[0]))
        ctx_st, ctx_en = st[off0 : off0 + n_ctx], en[off0 : off0 + n_ctx]
        starts = np.argsort(ctx_st)[::-1][:n_best]
        ends = np.argsort(ctx_en)[::-1][:n_best]
        offsets = context_offsets[ex]
        for s in starts:
            for e in ends:
                if e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(ctx_st[s] + ctx_en[e])
                if ex not in best or score > best[ex][0]:
                    first = offsets[w0 + s][0]
                    text = rows[ex]["context"][first : offsets[w0 + e][1]]
                    best[ex] = (score, text, first)
    predictions, null_diff = {}, {}
    for ex, row in enumerate(rows):
        score, text, first = best.get(ex, (-np.inf, "", -1))
        predictions[row["id"]] = text
        if spans is not None:
            spans[row["id"]] = (first, score)
        null_diff[row["id"]] = (
            float(null.get(ex, 0.0) - score) if np.isfinite(score) else float("inf")
        )
    return predictions, null_diff


# ------------------------------------------------------------------ official evaluation
# The rules of the official evaluate-v1.1.py / evaluate-v2.0.py scripts: answers are
# compared after lower-casing and removing punctuation, articles and extra whitespace;
# F1 is over the bag of normalised tokens; each question takes its best ground truth.


def normalize_answer(s: str) -> str:
    import re
    import string

    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(prediction: str, truth: str) -> float:
    from collections import Counter

    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not pred or not gold:  # v2.0: no-answer is right only against no-answer
        return float(pred == gold)
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def _raw_scores(predictions: dict[str, str], dataset) -> tuple[dict, dict, dict]:
    em, f1, has_ans = {}, {}, {}
    for row in dataset:
        truths = [t for t in row["answers"]["text"] if normalize_answer(t)] or [""]
        pred = predictions.get(row["id"], "")
        em[row["id"]] = max(exact_match(pred, t) for t in truths)
        f1[row["id"]] = max(f1_score(pred, t) for t in truths)
        has_ans[row["id"]] = bool(row["answers"]["text"])
    return em, f1, has_ans


def squad_scores(predictions: dict[str, str], dataset) -> dict[str, float]:
    """EM and F1 in percent over ``dataset`` rows (unanswerable rows have no answer texts)."""
    em, f1, _ = _raw_scores(predictions, dataset)
    n = len(em)
    return {"exact_match": 100 * sum(em.values()) / n, "f1": 100 * sum(f1.values()) / n}


def _best_threshold(
    span_preds: dict, scores: dict, null_diff: dict, has_ans: dict
) -> tuple[float, float]:
    """evaluate-v2.0.py's find_best_thresh: answer only where null_diff <= threshold."""
    cur = best = sum(1 for v in has_ans.values() if not v)
    best_thresh = 0.0
    for qid in sorted(null_diff, key=lambda q: null_diff[q]):
        if has_ans[qid]:
            cur += scores[qid]
        else:
            cur += -1 if span_preds[qid] else 0
        if cur > best:
            best, best_thresh = cur, null_diff[qid]
    return 100.0 * best / len(scores), best_thresh


def squad_v2_scores(
    span_preds: dict[str, str], null_diff: dict[str, float], dataset, threshold: float = 0.0
) -> dict[str, float]:
    """Official v2.0 scores: at ``threshold`` (predict no answer where null_diff > it), by
    has-answer / no-answer, and at the best threshold found on this data."""
    answered = {q: (p if null_diff[q] <= threshold else "") for q, p in span_preds.items()}
    em, f1, has_ans = _raw_scores(answered, dataset)
    span_em, span_f1, _ = _raw_scores(span_preds, dataset)
    n = len(em)
    out = {"exact_match": 100 * sum(em.values()) / n, "f1": 100 * sum(f1.values()) / n}
    for name, want in (("HasAns", True), ("NoAns", False)):
        qids = [q for q in em if has_ans[q] == want]
        if qids:
            out[f"{name}_exact"] = 100 * sum(em[q] for q in qids) / len(qids)
            out[f"{name}_f1"] = 100 * sum(f1[q] for q in qids) / len(qids)
    out["best_exact"], out["best_exact_thresh"] = _best_threshold(
        span_preds, span_em, null_diff, has_ans
    )
    out["best_f1"], out["best_f1_thresh"] = _best_threshold(span_preds, span_f1, null_diff, has_ans)
    return out
