"""Optimisers and schedules: parameter groups, the warm-up schedule, LAMB by hand, fused AdamW and clipping."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bertpipe.models.bert import BertConfig, BertForPreTraining
from bertpipe.training.objectives import MaskedLM
from bertpipe.training.optim import Lamb, linear_warmup_decay, param_groups
from bertpipe.training.pretraining_module import PretrainingModule

VOCAB, SEQ = 64, 16


def _batches(n: int = 6, size: int = 4) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(5, VOCAB, (size, SEQ), generator=g)
        labels = torch.full_like(ids, -100)
        labels[:, 1::4] = ids[:, 1::4]
        out.append(
            {
                "input_ids": ids,
                "token_type_ids": torch.zeros_like(ids),
                "attention_mask": torch.ones_like(ids),
                "mlm_labels": labels,
                "nsp_labels": torch.randint(0, 2, (size,), generator=g),
            }
        )
    return out


def _grad_norm(optimizer) -> float:
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    return float(
        torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in grads]))
    )


class _RecordingModule(PretrainingModule):
    """Records the total gradient norm around Lightning's clipping hook (the optimiser steps
    right after it, inside ``optimizer.step``'s closure)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.norms_before, self.norms_after = [], []

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ):
        self.norms_before.append(_grad_norm(optimizer))
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        self.norms_after.append(_grad_norm(optimizer))


def _train(precision: str, fused: bool | None = None, steps: int = 6):
    """A few steps of a 2-layer BERT on random tokens; ``fused=False`` forces foreach AdamW."""
    torch.manual_seed(0)
    model = BertForPreTraining(
        BertConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
    )
    module = _RecordingModule(
        model, MaskedLM(with_nsp=True), learning_rate=1e-2, warmup_steps=0, max_steps=steps
    )
    if fused is False:
        module._fused_adamw = lambda: False
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        max_steps=steps,
        gradient_clip_val=0.5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(_batches(steps), batch_size=None))
    return trainer.optimizers[0], model, module


@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true"])
def test_adamw_is_fused_without_a_scaler_and_its_steps_are_clipped(precision):
    opt, _, module = _train(precision)
    assert opt.defaults["fused"] is True
    assert len(module.norms_after) == 6
    assert max(module.norms_before) > 0.5, "the test needs gradients above the clipping threshold"
    # Clipped to the threshold; gradients under it are left as they were.
    for b, a in zip(module.norms_before, module.norms_after):
        assert a == pytest.approx(min(b, 0.5), rel=1e-4)


def test_fused_and_foreach_adamw_train_to_the_same_weights():
    _, fused, _ = _train("32-true")
    opt, foreach, _ = _train("32-true", fused=False)
    assert not opt.defaults["fused"]
    for (name, a), (_, b) in zip(fused.state_dict().items(), foreach.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_decay_only_on_two_dimensional_weights_and_tied_weights_once():
    model = BertForPreTraining(
        BertConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    )
    decay, no_decay = param_groups(model, 0.01)
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert len(ids) == len(set(ids)) == len({id(p) for p in model.parameters()})


def test_warmup_then_linear_decay():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = linear_warmup_decay(opt, warmup_steps=4, total_steps=12)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx(
        [0.25, 0.5, 0.75, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]
    )


def _lamb_by_hand(w, grads, lr, b1, b2, eps, wd):
    """You et al. (2019), Algorithm 2, in float64: Adam moments with bias correction, the
    decoupled decay added to the update, the step scaled by ||w|| / ||update|| (1 if either is 0)."""
    w, m, v = w.astype(np.float64), np.zeros_like(w, np.float64), np.zeros_like(w, np.float64)
    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        update = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps) + wd * w
        wn, un = np.linalg.norm(w), np.linalg.norm(update)
        w = w - lr * (wn / un if wn > 0 and un > 0 else 1.0) * update
    return w


@pytest.mark.parametrize("start", ["random", "zero"])
def test_lamb_steps_equal_the_algorithm_by_hand(start):
    rng = np.random.default_rng(0)
    w0 = (
        rng.normal(size=(3, 4)).astype(np.float32)
        if start == "random"
        else np.zeros((3, 4), np.float32)
    )
    grads = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3)]
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = Lamb([p], lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.1)
    for g in grads:
        p.grad = torch.from_numpy(g.copy())
        opt.step()
    expected = _lamb_by_hand(w0, grads, 0.01, 0.9, 0.99, 1e-6, 0.1)
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-5, atol=1e-7)
    # The trust ratio matters: plain Adam with the same settings lands elsewhere.
    adam = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = torch.optim.AdamW([adam], lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.0)
    for g in grads:
        adam.grad = torch.from_numpy(g.copy())
        opt.step()
    assert not np.allclose(adam.detach().numpy(), expected, atol=1e-4)
