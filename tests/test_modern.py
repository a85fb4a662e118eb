"""The modern family: parity with transformers' ModernBERT both ways, round trips, padding-free exactness."""

from __future__ import annotations

import pytest
import torch

from bertpipe.models import modern, modern_checkpoint
from bertpipe.models.registry import FAMILIES, checkpoint_family

VOCAB = 300
HEADS = {
    "ModernBertForMaskedLM": modern.ModernBertForMaskedLM,
    "ModernBertForSequenceClassification": modern.ModernBertForSequenceClassification,
    "ModernBertForTokenClassification": modern.ModernBertForTokenClassification,
    "ModernBertForQuestionAnswering": modern.ModernBertForQuestionAnswering,
}


def config(**overrides) -> modern.ModernConfig:
    """Small, with local layers whose window (8 each way) is shorter than the inputs."""
    return modern.ModernConfig.from_size(
        "tiny",
        VOCAB,
        num_hidden_layers=4,
        global_attn_every_n_layers=2,
        local_attention=8,
        **{"id2label": {"0": "a", "1": "b", "2": "c"}, **overrides},
    )


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three rows of 24 tokens, two of them padded (lengths 24, 15, 5)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (3, 24), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    mask[2, 5:] = 0
    return ids.masked_fill(mask == 0, 0), mask


def theirs_logits(hf, name: str, ids, mask) -> torch.Tensor:
    out = hf(input_ids=ids, attention_mask=mask)
    if name == "ModernBertForQuestionAnswering":
        return torch.stack([out.start_logits, out.end_logits], -1)
    return out.logits


def ours_logits(model, ids, mask) -> torch.Tensor:
    out = model(ids, None, mask)
    return out.mlm_logits if isinstance(model, modern.ModernBertForMaskedLM) else out.logits


def compare(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """Max difference where both compute something meaningful (real tokens; pooled rows)."""
    if a.dim() == 3:
        a, b = a[mask.bool()], b[mask.bool()]
    return float((a - b).abs().max())


@pytest.mark.parametrize("name", sorted(HEADS))
def test_ours_exported_loads_in_transformers_with_equal_logits(tmp_path, name):
    import transformers

    torch.manual_seed(0)
    labels = None if name == "ModernBertForQuestionAnswering" else {"0": "a", "1": "b", "2": "c"}
    ours = HEADS[name](config(id2label=labels)).eval()
    modern_checkpoint.save(ours, tmp_path)
    hf = getattr(transformers, name).from_pretrained(tmp_path, attn_implementation="eager").eval()
    ids, mask = batch()
    with torch.no_grad():
        diff = compare(ours_logits(ours, ids, mask), theirs_logits(hf, name, ids, mask), mask)
    assert diff <= 1e-5, diff
    assert hf.config.layer_types == ours.config.layer_types


@pytest.mark.parametrize("name", sorted(HEADS))
def test_transformers_modernbert_loads_here_with_equal_logits(tmp_path, name):
    import transformers

    torch.manual_seed(1)
    c = transformers.ModernBertConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        local_attention=6,
        pad_token_id=0,
        num_labels=2 if name == "ModernBertForQuestionAnswering" else 3,
        attn_implementation="eager",
    )
    hf = getattr(transformers, name)(c).eval()
    hf.save_pretrained(tmp_path)
    assert checkpoint_family(tmp_path).name == "modern"
    ours = modern_checkpoint.load(HEADS[name], tmp_path, strict=True).eval()
    ids, mask = batch(1)
    with torch.no_grad():
        diff = compare(ours_logits(ours, ids, mask), theirs_logits(hf, name, ids, mask), mask)
    assert diff <= 1e-5, diff


def test_save_load_round_trip_keeps_every_weight_and_the_tie(tmp_path):
    torch.manual_seed(2)
    a = modern.ModernBertForMaskedLM(config())
    FAMILIES["modern"].save(a, tmp_path)
    b = FAMILIES["modern"].load(modern.ModernBertForMaskedLM, tmp_path, strict=True)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert b.decoder.weight is b.model.embeddings.tok_embeddings.weight
    assert b.config == a.config


def test_padding_never_changes_the_real_tokens_outputs():
    """Padding-free inside: a row padded in a batch gives what it gives alone."""
    torch.manual_seed(3)
    model = modern.ModernBertModel(config()).eval()
    ids, mask = batch()
    with torch.no_grad():
        together = model(ids, None, mask).last_hidden_state
        for r in range(3):
            n = int(mask[r].sum())
            alone = model(ids[r : r + 1, :n]).last_hidden_state[0]
            assert torch.allclose(together[r, :n], alone, atol=1e-6)
            assert (together[r, n:] == 0).all()


def test_packed_and_padded_give_the_same_mlm_loss_and_gradients():
    from test_packing import collate, items

    torch.manual_seed(4)
    model = modern.ModernBertForMaskedLM(
        modern.ModernConfig.from_size("tiny", 100, local_attention=8)
    )
    its = items()
    grads, losses = [], []
    for packed in (False, True):
        b = collate(its, packed)
        model.zero_grad()
        keys = ("position_ids", "instance_ids")
        out = model(
            b["input_ids"],
            None,
            b["attention_mask"],
            mlm_labels=b["mlm_labels"],
            **{k: b[k] for k in keys if k in b},
        )
        out.loss.backward()
        losses.append(out.loss.item())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert abs(losses[0] - losses[1]) < 1e-5
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4), name


def test_no_next_sentence_head():
    model = modern.ModernBertForMaskedLM(config())
    ids, mask = batch()
    with pytest.raises(ValueError, match="no next-sentence head"):
        model(ids, None, mask, nsp_labels=torch.zeros(3, dtype=torch.long))
