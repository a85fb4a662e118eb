"""Padding-free pretraining: packed rows compute what padded rows compute, instance by instance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bertpipe.config import MaskingConfig
from bertpipe.data.masking import Masker
from bertpipe.data.packing import pack_rows
from bertpipe.models.bert import BertConfig, BertForPreTraining
from bertpipe.training.objectives import MaskedLM
from bertpipe.training.pretraining_data import PretrainCollator, instances_in

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = {t: i for i, t in enumerate(SPECIALS + [f"w{i}" for i in range(95)])}
CAPACITY = 32


def items(n: int = 12, seed: int = 0) -> list[dict]:
    """Instances of mixed lengths (4..32): [CLS] A [SEP] B [SEP], with NSP labels."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(4, CAPACITY + 1))
        ids = rng.integers(5, 100, length)
        boundary = length // 2
        ids[0], ids[boundary - 1], ids[-1] = 2, 3, 3
        out.append(
            {
                "input_ids": ids,
                "type_boundary": boundary,
                "nsp_label": int(rng.integers(0, 2)),
                "epoch": 0,
                "index": i,
            }
        )
    return out


def collate(batch_items: list[dict], packed: bool) -> dict[str, torch.Tensor]:
    masker = Masker.from_vocab(VOCAB, MaskingConfig(mlm_probability=0.3))
    return PretrainCollator(masker, 0, seed=7, pack_capacity=CAPACITY if packed else None)(
        batch_items
    )


@pytest.fixture(scope="module")
def model() -> BertForPreTraining:
    torch.manual_seed(0)
    cfg = BertConfig.from_size(
        "tiny", len(VOCAB), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    return BertForPreTraining(cfg).eval()


def losses_and_grads(model, batch):
    model.zero_grad()
    loss, terms = MaskedLM(with_nsp=True).step(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: t.loss.item() for k, t in terms.items()}, grads, terms


def test_first_fit_decreasing_places_every_instance_once_within_capacity():
    lengths = [30, 5, 12, 20, 3, 32, 8, 8, 17]
    rows = pack_rows(lengths, 32)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= 32 for r in rows)
    assert len(rows) == 5 and rows == pack_rows(lengths, 32)  # 135 tokens: 5 rows is optimal
    with pytest.raises(ValueError, match="exceeds the row capacity"):
        pack_rows([33], 32)


def test_packed_rows_hold_the_same_tokens_labels_and_positions():
    its = items()
    padded, packed = collate(its, False), collate(its, True)
    assert instances_in(packed) == instances_in(padded) == len(its)
    assert packed["input_ids"].shape[0] < padded["input_ids"].shape[0]
    assert int(packed["attention_mask"].sum()) == int(padded["attention_mask"].sum())
    flat = {k: v.flatten() for k, v in packed.items() if v.dim() == 2}
    for i, x in enumerate(its):
        n, start = len(x["input_ids"]), int(packed["cls_index"][i])
        at = slice(start, start + n)
        assert torch.equal(flat["input_ids"][at], padded["input_ids"][i, :n])
        assert torch.equal(flat["mlm_labels"][at], padded["mlm_labels"][i, :n])
        assert torch.equal(flat["token_type_ids"][at], padded["token_type_ids"][i, :n])
        assert torch.equal(flat["position_ids"][at], torch.arange(n))
        assert (flat["instance_ids"][at] == i).all()
    assert torch.equal(packed["nsp_labels"], padded["nsp_labels"])


def test_packed_and_padded_give_the_same_losses_and_gradients(model):
    its = items()
    a_loss, a_grad, _ = losses_and_grads(model, collate(its, False))
    b_loss, b_grad, _ = losses_and_grads(model, collate(its, True))
    assert a_loss.keys() == b_loss.keys() == {"mlm", "nsp"}
    for k in a_loss:
        assert abs(a_loss[k] - b_loss[k]) < 1e-5, (k, a_loss[k], b_loss[k])
    assert a_grad.keys() == b_grad.keys()
    for name in a_grad:
        assert torch.allclose(a_grad[name], b_grad[name], atol=1e-5, rtol=1e-4), name


def test_no_attention_crosses_an_instance_boundary(model):
    """Change every token of one instance: the others sharing its rows keep their outputs."""
    its = items()
    before = collate(its, True)
    shared = next(r for r in before["instance_ids"] if len(set(r.tolist()) - {-1}) > 1)
    victim = int(shared[0])  # the first instance of a row that holds several
    changed = [dict(x) for x in its]
    ids = changed[victim]["input_ids"].copy()
    ids[1:-1] = np.where(ids[1:-1] == 3, 3, (ids[1:-1] + 7 - 5) % 95 + 5)
    changed[victim]["input_ids"] = ids
    after = collate(changed, True)
    assert torch.equal(before["instance_ids"], after["instance_ids"])
    with torch.no_grad():
        h = [
            model.bert(
                b["input_ids"],
                b["token_type_ids"],
                b["attention_mask"],
                position_ids=b["position_ids"],
                instance_ids=b["instance_ids"],
                cls_index=b["cls_index"],
            )
            for b in (before, after)
        ]
    others = (before["instance_ids"] != victim) & (before["instance_ids"] >= 0)
    mine = before["instance_ids"] == victim
    assert int(others[(before["instance_ids"] == victim).any(1)].sum()) > 0
    assert torch.equal(h[0].last_hidden_state[others], h[1].last_hidden_state[others])
    assert not torch.allclose(h[0].last_hidden_state[mine], h[1].last_hidden_state[mine])
    keep = [i for i in range(len(its)) if i != victim]
    assert torch.equal(h[0].pooler_output[keep], h[1].pooler_output[keep])


def test_length_grouped_batches_hold_every_example_once_and_repeat_per_seed():
    from bertpipe.training.finetuning_data import LengthGroupedBatchSampler

    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 129, 1000).tolist()
    sampler = LengthGroupedBatchSampler(lengths, 32, seed=3, group_batches=4)
    epochs = [list(sampler), list(sampler)]
    for batches in epochs:
        assert len(batches) == len(sampler) == 32
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1000))
        assert sum(len(b) < 32 for b in batches) == 1
    assert epochs[0] != epochs[1]  # a new order each epoch
    again = LengthGroupedBatchSampler(lengths, 32, seed=3, group_batches=4)
    assert [list(again), list(again)] == epochs  # the same per seed
    assert list(LengthGroupedBatchSampler(lengths, 32, seed=4, group_batches=4)) != epochs[0]

    def padded(batches) -> int:
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    shuffled = np.random.default_rng(3).permutation(1000)
    plain = [shuffled[i : i + 32].tolist() for i in range(0, 1000, 32)]
    assert padded(epochs[0]) < 0.7 * padded(plain)  # most of the padding is gone
    assert padded(epochs[0]) >= sum(lengths)


def pair_rows(n: int, labels: int, seed: int = 1) -> list[dict]:
    """Encoded sentence pairs of 6..40 tokens with labels in 0..labels-1."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        k = int(rng.integers(6, 41))
        ids = [2, *rng.integers(5, 100, k - 2).tolist(), 3]
        types = [0] * (k // 2) + [1] * (k - k // 2)
        rows.append({"input_ids": ids, "token_type_ids": types, "label": int(rng.integers(labels))})
    return rows


def sequence_classifier(labels: int):
    from bertpipe.models.bert import BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig.from_size(
        "tiny",
        len(VOCAB),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        id2label={str(i): f"c{i}" for i in range(labels)},
    )
    return BertForSequenceClassification(cfg)


def test_a_packed_fine_tuning_batch_gives_the_padded_batchs_loss_and_gradients():
    from bertpipe.data.packing import pack_padded
    from bertpipe.tasks.kinds import KINDS

    padded = KINDS["classification"].collate(pair_rows(16, 3), 0)
    packed = pack_padded(padded, 64, 0)
    assert packed["input_ids"].shape[0] < 16 and torch.equal(packed["labels"], padded["labels"])
    model = sequence_classifier(3)
    results = []
    for batch in (padded, packed):
        model.zero_grad()
        extra = {k: batch[k] for k in ("position_ids", "instance_ids", "cls_index") if k in batch}
        out = model(
            batch["input_ids"],
            batch["token_type_ids"],
            batch["attention_mask"],
            labels=batch["labels"],
            **extra,
        )
        out.loss.backward()
        results.append(
            (
                out.loss.item(),
                out.logits.detach(),
                {n: p.grad.clone() for n, p in model.named_parameters()},
            )
        )
    (la, ya, ga), (lb, yb, gb) = results
    assert abs(la - lb) < 1e-5 and torch.allclose(ya, yb, atol=1e-5)
    for name in ga:
        assert torch.allclose(ga[name], gb[name], atol=1e-5, rtol=1e-4), name


def test_fine_tuning_rows_are_as_wide_as_the_cost_estimate_prefers():
    """32 instances of 11 tokens: rows of 24 (two a row, 16 rows) cost 16 x 24 x (1 + 24/256)
    = 420, less than rows of 128 (eleven a row, 3 rows: 576) or one a row (32 x 16: 544);
    instances as long as the maximum leave no choice."""
    from bertpipe.data.packing import cheapest_capacity

    assert cheapest_capacity(np.full(32, 11), 128) == 24
    assert cheapest_capacity(np.array([128, 3, 5]), 128) == 128
    assert cheapest_capacity(np.array([100, 100, 20]), 128) == 120  # 20 joins a 100: 2 rows
    assert cheapest_capacity(np.array([7]), 5 * 8 + 3) == 8


def test_dev_batches_pack_and_score_as_the_padded_ones():
    """The stage's dev evaluation and ``bertpipe predict`` batch through ``TaskKind.batch``:
    packed, every example keeps its padded logits, in order, so the task's metrics and the
    constant predictor's are the same; a kind that does not pack is left padded."""
    from bertpipe.config import FinetuneConfig, FinetuneHParams
    from bertpipe.data.packing import PACKED_KEYS
    from bertpipe.tasks.kinds import KINDS, Encoded
    from bertpipe.tasks.spec import resolve_task

    spec = resolve_task("mrpc", FinetuneConfig())  # F1 and accuracy; no data read
    rows, hp = pair_rows(24, 2, seed=3), FinetuneHParams()
    model = sequence_classifier(2).eval()
    constant = spec.kind.constant_logits(spec, Encoded(rows, len(rows)))
    scored = []
    for pack_into in (None, 64):
        evaluator = spec.kind.evaluator(spec, Encoded(rows, len(rows)), hp)
        baseline = spec.kind.evaluator(spec, Encoded(rows, len(rows)), hp)
        logits, batch_rows = [], 0
        for start in range(0, len(rows), 8):
            batch = spec.kind.batch(rows[start : start + 8], 0, pack_into)
            batch_rows += batch["input_ids"].shape[0]
            packed = {k: batch[k] for k in PACKED_KEYS if k in batch}
            with torch.no_grad():
                out = model(
                    batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], **packed
                ).logits
            evaluator.update(batch, out)
            baseline.update(batch, constant(batch))
            logits.append(out)
        scored.append((torch.cat(logits), evaluator.compute(), baseline.compute(), batch_rows))
    (padded_logits, padded_scores, padded_base, padded_rows), packed_run = scored
    packed_logits, packed_scores, packed_base, packed_rows = packed_run
    assert packed_rows < padded_rows == 24  # the dev batches were packed
    assert torch.allclose(padded_logits, packed_logits, atol=1e-5)
    assert padded_scores == packed_scores and padded_base == packed_base
    tagging = KINDS["token_classification"]
    tag_rows = [{**r, "tags": [0] * len(r["input_ids"])} for r in rows[:4]]
    assert "instance_ids" not in tagging.batch(tag_rows, 0, 64)
