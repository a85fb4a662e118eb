"""The families beside BERT: exact equations, causality, parity with transformers, round trips.

Fast unit tier: random weights and tokens, no data.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bertpipe.config import PRETRAINED_FAMILIES, SCRATCH_FAMILIES, FinetuneConfig, ModelConfig
from bertpipe.models import elmo, gpt, gpt_checkpoint, recurrent
from bertpipe.models.hf_format import CheckpointError
from bertpipe.models.registry import FAMILIES, family_config
from bertpipe.training.objectives import OBJECTIVES

V = 50


def _batch(seed: int = 0, B: int = 3, T: int = 12):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 8:] = 0  # a shorter, right-padded row
    ids[1, 8:] = 0
    return ids, mask


def _gpt_config(**kw) -> gpt.GPTConfig:
    base = dict(vocab_size=V, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    return gpt.GPTConfig(**{**base, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, **kw})


def _elmo_config(**kw) -> elmo.ELMoConfig:
    return elmo.ELMoConfig(
        **{"vocab_size": V, "hidden_size": 16, "num_layers": 2, "dropout": 0.0, **kw}
    )


# ------------------------------------------------------------------------ the registry


def test_the_config_family_lists_are_the_registry():
    assert set(SCRATCH_FAMILIES) == set(FAMILIES)
    assert set(PRETRAINED_FAMILIES) == {n for n, f in FAMILIES.items() if f.pretraining}
    assert all(OBJECTIVES[f.objective] for f in FAMILIES.values() if f.objective)


# ----------------------------------------------------------------------------- Elman RNN


def test_the_elman_cell_is_the_equations():
    """h_t = tanh(b + W h_{t-1} + U x_t), o_t = c + V h_t, then softmax."""
    torch.manual_seed(0)
    c = recurrent.RecurrentConfig(
        vocab_size=V, cell="rnn", embedding_dim=6, hidden_size=5, bidirectional=False, dropout=0.0
    )
    c = dataclasses.replace(c, id2label={"0": "a", "1": "b", "2": "c"})
    model = recurrent.RecurrentForTokenClassification(c).eval()
    rnn = model.encoder.encoder.stack.rnn
    U, W = rnn.weight_ih_l0, rnn.weight_hh_l0
    b = rnn.bias_ih_l0 + rnn.bias_hh_l0
    Vw, cb = model.classifier.weight, model.classifier.bias
    ids, mask = _batch()
    with torch.no_grad():
        x = model.encoder.word_embeddings(ids) + model.encoder.token_type_embeddings(
            torch.zeros_like(ids)
        )
        out = model(ids, None, mask).logits
        for row in range(ids.shape[0]):
            h = torch.zeros(5)
            for t in range(int(mask[row].sum())):
                h = torch.tanh(b + W @ h + U @ x[row, t])
                o = cb + Vw @ h
                torch.testing.assert_close(out[row, t], o, atol=1e-6, rtol=0)
                assert torch.allclose(o.softmax(-1).sum(), torch.tensor(1.0))


def test_additive_attention_pooling_is_the_bahdanau_score_over_real_tokens():
    torch.manual_seed(0)
    pool = recurrent.AdditiveAttentionPooling(8, 4)
    h = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    e = torch.stack(
        [
            torch.stack([pool.v.weight[0] @ torch.tanh(pool.proj(h[b, t])) for t in range(5)])
            for b in range(2)
        ]
    )
    e[0, 3:] = float("-inf")
    alpha = e.softmax(-1)
    torch.testing.assert_close(pool(h, mask), torch.einsum("bt,bth->bh", alpha, h))
    assert pool.weights(h, mask)[0, 3:].abs().sum() == 0  # padding gets no weight


@pytest.mark.parametrize("how", ["attention", "mean", "max"])
def test_padding_never_changes_a_recurrent_encoding(how):
    torch.manual_seed(0)
    c = recurrent.RecurrentConfig(
        vocab_size=V, cell="gru", embedding_dim=8, hidden_size=8, pooling=how, dropout=0.0
    )
    model = recurrent.RecurrentForSequenceClassification(c).eval()
    ids, mask = _batch()
    other = ids.clone()
    other[1, 8:] = 7  # different tokens in the padding
    with torch.no_grad():
        torch.testing.assert_close(model(ids, None, mask).logits, model(other, None, mask).logits)


# ------------------------------------------------------------------------- causality


def test_gpt_output_at_t_never_depends_on_later_tokens():
    torch.manual_seed(0)
    model = gpt.GPTLMHeadModel(_gpt_config()).eval()
    ids, _ = _batch()
    t = 5
    changed = ids.clone()
    changed[:, t + 1 :] = torch.randint(5, V, changed[:, t + 1 :].shape)
    with torch.no_grad():
        a, b = model(ids).logits, model(changed).logits  # (B, T, V)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], atol=0, rtol=0)
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


def test_elmo_forward_lm_never_sees_later_tokens_and_backward_lm_never_earlier():
    torch.manual_seed(0)
    bilm = elmo.BiLM(_elmo_config()).eval()
    ids, mask = _batch()
    t = 5
    later, earlier = ids.clone(), ids.clone()
    later[0, t + 1 :] = torch.randint(5, V, later[0, t + 1 :].shape)
    earlier[0, :t] = torch.randint(5, V, earlier[0, :t].shape)
    with torch.no_grad():
        _, fwd, bwd = bilm(ids, mask)
        _, fwd_l, bwd_l = bilm(later, mask)
        _, fwd_e, bwd_e = bilm(earlier, mask)
    for j in range(2):
        torch.testing.assert_close(fwd[j][0, : t + 1], fwd_l[j][0, : t + 1], atol=0, rtol=0)
        torch.testing.assert_close(bwd[j][0, t:], bwd_e[j][0, t:], atol=0, rtol=0)
        assert not torch.allclose(fwd[j][0, t + 1 :], fwd_l[j][0, t + 1 :])
        assert not torch.allclose(bwd[j][0, :t], bwd_e[j][0, :t])


def test_elmo_backward_lm_starts_at_each_rows_last_real_token():
    """Padding after a short row is never read by the backward direction either."""
    torch.manual_seed(0)
    bilm = elmo.BiLM(_elmo_config()).eval()
    ids, mask = _batch()
    other = ids.clone()
    other[1, 8:] = 9
    with torch.no_grad():
        _, _, bwd = bilm(ids, mask)
        _, _, bwd_o = bilm(other, mask)
    torch.testing.assert_close(bwd[-1][1, :8], bwd_o[-1][1, :8], atol=0, rtol=0)


# --------------------------------------------------------- GPT and transformers' GPT-2


def test_gpt_exports_to_transformers_gpt2_and_loads_from_it(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    ids, _ = _batch()
    ours = gpt.GPTLMHeadModel(_gpt_config()).eval()
    gpt_checkpoint.save(ours, tmp_path / "ours")
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert (ours(ids).logits - theirs(ids).logits).abs().max() <= 1e-5

    config = transformers.GPT2Config(
        vocab_size=V, n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(tmp_path / "hf")
    back = gpt_checkpoint.load(gpt.GPTLMHeadModel, tmp_path / "hf", strict=True).eval()
    with torch.no_grad():
        assert (back(ids).logits - hf(ids).logits).abs().max() <= 1e-5


def test_gpt_task_heads_are_transformers_gpt2_heads(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    ids, _ = _batch()
    ids[1, 8:] = 0  # pad id 0 = transformers' last-non-pad rule finds the extract token
    labelled = _gpt_config(id2label={"0": "neg", "1": "pos", "2": "mid"})
    for ours_cls, hf_name in (
        (gpt.GPTForSequenceClassification, "GPT2ForSequenceClassification"),
        (gpt.GPTForTokenClassification, "GPT2ForTokenClassification"),
    ):
        ours = ours_cls(labelled).eval()
        gpt_checkpoint.save(ours, tmp_path / hf_name)
        theirs = getattr(transformers, hf_name).from_pretrained(tmp_path / hf_name).eval()
        mask = (ids != 0).long()
        with torch.no_grad():
            a = ours(ids, None, mask).logits
            b = theirs(ids, attention_mask=mask).logits
        if hf_name.endswith("TokenClassification"):
            a, b = a[mask.bool()], b[mask.bool()]
        assert (a - b).abs().max() <= 1e-5


def test_a_gpt_shape_transformers_cannot_hold_is_refused_by_name():
    with pytest.raises(ValueError, match=r"n_head \(3\) must divide n_embd \(32\)"):
        _gpt_config(n_head=3)
    model = gpt.GPTLMHeadModel(_gpt_config())
    model.config.n_head = 3  # changed after construction: the export still checks
    with pytest.raises(CheckpointError, match=r"model.gpt.n_head: 3 does not divide"):
        gpt_checkpoint.save(model, "/nonexistent")


def test_gpt_aux_lm_loss_is_added_with_its_weight():
    torch.manual_seed(0)
    ids, mask = _batch()
    labels = torch.tensor([0, 1, 0])
    plain = gpt.GPTForSequenceClassification(_gpt_config(lm_loss_weight=0.0))
    aux = gpt.GPTForSequenceClassification(_gpt_config(lm_loss_weight=0.5))
    aux.load_state_dict(plain.state_dict())
    lm = gpt.next_token_loss(plain.encoder.lm_logits, plain.encoder.hidden_states(ids), ids, mask)
    torch.testing.assert_close(
        aux(ids, None, mask, labels).loss, plain(ids, None, mask, labels).loss + 0.5 * lm[0]
    )


# ------------------------------------------------------------------------------ ELMo


def test_each_bilm_direction_lowers_its_own_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = elmo.ELMoForPreTraining(_elmo_config())
    ids, mask = _batch()
    before = model(ids, mask)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(30):
        opt.zero_grad()
        model(ids, mask).loss.backward()
        opt.step()
    after = model(ids, mask)
    assert after.forward_loss < 0.7 * before.forward_loss
    assert after.backward_loss < 0.7 * before.backward_loss
    # the two directions predict different things (next and previous tokens), each with its own
    # LSTMs: a direction's loss has no gradient in the other direction's layers
    assert not torch.equal(before.forward_targets, before.backward_targets)
    model.zero_grad()
    model(ids, mask).forward_loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.bilm.backward_layers.parameters())
    assert any(p.grad.any() for p in model.bilm.forward_layers.parameters())
    model.zero_grad()
    model(ids, mask).backward_loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.bilm.forward_layers.parameters())


def test_the_scalar_mix_is_learned_and_starts_uniform():
    torch.manual_seed(0)
    c = _elmo_config(id2label={"0": "a", "1": "b"})
    model = elmo.ELMoForSequenceClassification(c)
    mix = model.encoder.mix
    assert torch.equal(mix.scalars.softmax(0), torch.full((3,), 1 / 3)) and mix.gamma == 1
    assert not any(p.requires_grad for p in model.encoder.bilm.parameters())  # frozen biLM
    ids, mask = _batch()
    labels = torch.tensor([0, 1, 1])
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-2)
    for _ in range(20):
        opt.zero_grad()
        model(ids, None, mask, labels).loss.backward()
        opt.step()
    weights = mix.scalars.softmax(0)
    assert (weights - 1 / 3).abs().max() > 1e-3 and mix.gamma != 1
    # fine-tunable on request
    free = elmo.ELMoForSequenceClassification(dataclasses.replace(c, freeze_bilm=False))
    assert all(p.requires_grad for p in free.encoder.bilm.parameters())


def test_the_mix_is_gamma_times_softmax_weighted_layers():
    mix = elmo.ScalarMix(3)
    with torch.no_grad():
        mix.scalars.copy_(torch.tensor([0.0, 1.0, 2.0]))
        mix.gamma.fill_(2.0)
    layers = [torch.full((1, 2, 4), float(j)) for j in range(3)]
    w = torch.tensor([0.0, 1.0, 2.0]).softmax(0)
    torch.testing.assert_close(mix(layers), 2.0 * (w[1] * 1 + w[2] * 2) * torch.ones(1, 2, 4))


# ------------------------------------------------------------------ save and reload


def _tokenizer_like(vocab: int):
    class Tok:
        def get_vocab_size(self):
            return vocab

        def token_to_id(self, token):
            return 0

    return Tok()


NETWORKS = [
    (name, head)
    for name, f in sorted(FAMILIES.items())
    for head in (["pretraining"] if f.pretraining else []) + sorted(f.heads)
]


@pytest.mark.parametrize("name,head", NETWORKS)
def test_every_family_saves_and_reloads_to_identical_outputs(tmp_path, name, head):
    family = FAMILIES[name]
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate(
        {
            "bert": {"size": "tiny"},
            "gpt": {"n_layer": 1, "n_embd": 16, "n_head": 2},
            "elmo": {"hidden_size": 16, "num_layers": 1},
            "recurrent": {"embedding_dim": 8, "hidden_size": 8},
        }
    )
    config = family_config(family, cfg, V, 0)
    labels = {"id2label": {"0": "a", "1": "b", "2": "c"}} if head != "pretraining" else {}
    cls = family.pretraining if head == "pretraining" else family.head(head)
    tuning = family.tuning(FinetuneConfig()) if head != "pretraining" else {}
    model = cls(dataclasses.replace(config, **labels, **tuning)).eval()
    family.save(model, tmp_path)
    back = family.load(cls, tmp_path, strict=True).eval()
    ids, mask = _batch()
    with torch.no_grad():
        if head == "pretraining":  # the objective's step: the loss of every term
            objective = OBJECTIVES[family.objective](with_nsp=False)
            batch = {
                "input_ids": ids,
                "token_type_ids": torch.zeros_like(ids),
                "attention_mask": mask,
            }
            batch["mlm_labels"] = torch.where(ids % 3 == 0, ids, -100)
            a = torch.stack([t.loss for t in objective.step(model, batch)[1].values()])
            b = torch.stack([t.loss for t in objective.step(back, batch)[1].values()])
        else:
            a, b = model(ids, None, mask).logits, back(ids, None, mask).logits
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- FLOPs


def test_flops_formulas_on_a_known_shape():
    # GPT: L=2, D=32, inner=128, V=50, T=12, every position predicted:
    # 3 x (2*2*(4*32*32 + 2*32*128) + 2*2*2*12*32 + 2*32*50)
    assert gpt.flops_per_token(_gpt_config(), 12) == 3 * (2 * 2 * (4096 + 8192) + 3072 + 3200)
    # ELMo: H=16, L=2, V=50: 3 x 2 directions x (2 * 2*4*16*32 + 2*16*50)
    assert elmo.flops_per_token(_elmo_config(), 12) == 3 * 2 * (2 * 4096 + 1600)
    # LSTM baseline, bidirectional, one layer, E=6, H=5: 3 x 2 x 2*4*5*(6+5)
    c = recurrent.RecurrentConfig(cell="lstm", embedding_dim=6, hidden_size=5)
    assert recurrent.flops_per_token(c) == 3 * 2 * 2 * 4 * 5 * 11


def test_gpt_flops_formula_matches_torchs_count_of_the_matmuls():
    """torch's FLOP counter over one forward + backward of a batch agrees within 5%."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    c = _gpt_config(n_embd=64, n_layer=2, n_head=4, vocab_size=500)
    model = gpt.GPTLMHeadModel(c)
    ids = torch.randint(0, 500, (4, 16))
    with FlopCounterMode(display=False) as counter:
        model(ids, torch.ones_like(ids)).loss.backward()
    measured = counter.get_total_flops() / ids.numel()
    estimate = gpt.flops_per_token(c, 16, predicted_fraction=15 / 16)
    assert abs(measured - estimate) / measured < 0.05, (measured, estimate)


# ------------------------------------------------------------------ budget -> steps


def test_the_budget_buys_the_same_tokens_for_every_family_or_the_same_flops():
    from bertpipe.config import BudgetConfig, PretrainConfig
    from bertpipe.errors import InputError
    from bertpipe.training.pretraining import budget_steps

    tokens = PretrainConfig(budget=BudgetConfig(tokens=10_000))
    assert budget_steps(tokens, 1024, 1e6) == 10 and budget_steps(tokens, 1024, 5e6) == 10
    flops = PretrainConfig(budget=BudgetConfig(tokens=None, flops=1e10))
    assert budget_steps(flops, 1000, 1e6) == 10 and budget_steps(flops, 1000, 2e6) == 5
    with pytest.raises(InputError, match=r"pretrain.budget.flops \(1e\+10\) does not buy one step"):
        budget_steps(flops, 1000, 1e8)


def test_a_masked_objective_projects_fewer_positions_than_a_language_model():
    data = {
        "masking": {"mlm_probability": 0.4, "max_predictions_per_seq": 10},
        "max_seq_length": 32,
    }
    assert OBJECTIVES["masked_lm"]().predicted_fraction(data) == 10 / 32
    assert OBJECTIVES["next_token"]().predicted_fraction(data) == 1.0


@pytest.mark.parametrize("pooling", ["attention", "mean", "max"])
def test_elmo_linear_task_head_pools_the_mix(pooling):
    """``finetune.elmo.task_encoder: linear``: no task biLSTM, the mix pooled into a linear head."""
    torch.manual_seed(0)
    c = _elmo_config(id2label={"0": "a", "1": "b"}, task_encoder="linear", task_pooling=pooling)
    model = elmo.ELMoForSequenceClassification(c).eval()
    assert model.encoder.task is None
    assert (model.encoder.attention is not None) == (pooling == "attention")
    ids, mask = _batch()
    other = ids.clone()
    other[1, 8:] = 7  # padding content never matters
    with torch.no_grad():
        a, b = model(ids, None, mask).logits, model(other, None, mask).logits
    assert a.shape == (3, 2) and torch.equal(a, b)
