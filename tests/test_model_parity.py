"""Our BERT against transformers: real MiniLM weights, random pretraining heads, export round trip."""

from __future__ import annotations

import pytest
import torch
import transformers

from bertpipe.models import bert as ours_mod
from bertpipe.models.bert import BertConfig, BertForPreTraining, BertModel
from bertpipe.models.bert_checkpoint import load, save
from conftest import real_sentences


@pytest.fixture(scope="module")
def minilm_batch(minilm_dir, mirror):
    from bertpipe.data.tokenizer import load_existing

    tok = load_existing(str(minilm_dir))
    sentences = real_sentences(8)
    sentences[3] = sentences[3] + " " + sentences[4] + " " + sentences[5]  # a long one
    enc = tok.encode_batch(list(zip(sentences[::2], sentences[1::2])))
    T = max(len(e.ids) for e in enc)
    ids = torch.zeros(len(enc), T, dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for i, e in enumerate(enc):
        n = len(e.ids)
        ids[i, :n], types[i, :n], mask[i, :n] = torch.tensor(e.ids), torch.tensor(e.type_ids), 1
    assert mask.sum(1).min() < T  # padded rows present
    return ids, types, mask


def test_minilm_real_weights_match_transformers(minilm_dir, minilm_batch):
    ids, types, mask = minilm_batch
    ours = load(BertModel, minilm_dir).eval()
    assert ours.loading_info == {"missing_keys": [], "unexpected_keys": []}
    ref = transformers.BertModel.from_pretrained(
        str(minilm_dir), attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        a = ours(ids, types, mask)
        b = ref(input_ids=ids, token_type_ids=types, attention_mask=mask)
    valid = mask.bool()
    assert (a.last_hidden_state[valid] - b.last_hidden_state[valid]).abs().max() <= 1e-5
    assert (a.pooler_output - b.pooler_output).abs().max() <= 1e-5


def test_minilm_attention_maps_match_transformers_output_attentions(minilm_dir, minilm_batch):
    """Our per-layer attention probabilities equal transformers' ``output_attentions`` on the
    real MiniLM weights (padded rows included); asking for them leaves the outputs as the SDPA
    path computes them, and without the flag none are returned."""
    ids, types, mask = minilm_batch
    ours = load(BertModel, minilm_dir).eval()
    ref = transformers.BertModel.from_pretrained(
        str(minilm_dir), attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        a = ours(ids, types, mask, output_attentions=True)
        plain = ours(ids, types, mask)
        b = ref(input_ids=ids, token_type_ids=types, attention_mask=mask, output_attentions=True)
    assert plain.attentions is None and len(a.attentions) == len(b.attentions) == 6
    keys = mask.bool()[:, None, None, :].expand_as(a.attentions[0])
    for ours_layer, ref_layer in zip(a.attentions, b.attentions, strict=True):
        assert ours_layer.shape == ref_layer.shape  # (B, heads, T, T)
        assert (ours_layer - ref_layer)[keys].abs().max() <= 1e-5
        assert ours_layer[~keys].abs().max() == 0  # padding is never attended to
    valid = mask.bool()
    assert (a.last_hidden_state - plain.last_hidden_state)[valid].abs().max() <= 1e-5


def test_attention_picture_has_a_distinct_map_per_head(minilm_dir, tmp_path):
    from PIL import Image

    from bertpipe.inference.attention import attention, plot

    tokens, probs = attention(minilm_dir, "the man went to the store .", "he bought milk .")
    assert tokens[0] == "[CLS]" and probs.shape == (6, 12, len(tokens), len(tokens))
    assert torch.allclose(probs.sum(-1), torch.ones(6, 12, len(tokens)), atol=1e-5)
    flat = probs.flatten(0, 1)  # (72, T, T): no two heads draw the same map
    distance = (flat[:, None] - flat[None]).abs().amax((-1, -2))
    assert distance[~torch.eye(len(flat), dtype=torch.bool)].min() > 1e-3
    png = plot(tokens, probs, tmp_path / "att.png")
    image = Image.open(png)
    assert image.width > 1000 and image.height > 500
    assert len(set(image.convert("L").tobytes())) > 50  # a picture, not a blank canvas


def random_hf_pretraining(vocab=1000):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=vocab,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        attn_implementation="eager",
    )
    return transformers.BertForPreTraining(cfg).eval()


def test_random_pretraining_model_converts_with_identical_outputs(tmp_path):
    ref = random_hf_pretraining()
    ref.save_pretrained(tmp_path / "hf")
    ours = load(BertForPreTraining, tmp_path / "hf").eval()
    assert ours.loading_info["missing_keys"] == []
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 1000, (4, 24), generator=g)
    types = (torch.arange(24) >= 10).long().expand(4, 24)
    mask = torch.ones(4, 24, dtype=torch.long)
    mask[2, 18:] = 0
    labels = torch.full_like(ids, -100)
    labels[:, [3, 7, 15]] = ids[:, [3, 7, 15]]
    labels[2, 15] = -100  # (padding is never labelled)
    nsp = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        o = ours(ids, types, mask, mlm_labels=labels, nsp_labels=nsp)
        r = ref(
            input_ids=ids,
            token_type_ids=types,
            attention_mask=mask,
            labels=labels,
            next_sentence_label=nsp,
        )
        logits = ours(ids, types, mask).mlm_logits
    sel = labels != -100
    assert o.mlm_logits is None  # with labels the loss builds them a chunk at a time
    assert torch.equal(o.mlm_predictions, logits[sel].argmax(-1))
    assert (logits[sel] - r.prediction_logits[sel]).abs().max() <= 1e-5
    assert (o.nsp_logits - r.seq_relationship_logits).abs().max() <= 1e-5
    assert abs(o.loss.item() - r.loss.item()) <= 1e-5


@pytest.mark.parametrize("position_init", ["normal", "sinusoidal"])
def test_our_export_loads_in_transformers_with_same_outputs(tmp_path, position_init):
    cfg = BertConfig.from_size("tiny", vocab_size=500, position_init=position_init)
    torch.manual_seed(3)
    ours = BertForPreTraining(cfg).eval()
    save(ours, tmp_path / "ours")
    ids = torch.randint(5, 500, (2, 16))
    with torch.no_grad():
        a = ours(ids)
        for auto in (transformers.AutoModelForPreTraining, transformers.AutoModelForMaskedLM):
            ref = auto.from_pretrained(str(tmp_path / "ours"), attn_implementation="eager").eval()
            logits = (
                ref(input_ids=ids).logits
                if auto is transformers.AutoModelForMaskedLM
                else ref(input_ids=ids).prediction_logits
            )
            assert (a.mlm_logits - logits).abs().max() <= 1e-5
        enc = transformers.AutoModel.from_pretrained(str(tmp_path / "ours")).eval()
        assert (
            ours.bert(ids).last_hidden_state - enc(input_ids=ids).last_hidden_state
        ).abs().max() <= 1e-5
    # The init recipe is not architecture: transformers' config never sees it.
    assert "position_init" not in (tmp_path / "ours" / "config.json").read_text()
    # And back: ours -> disk -> ours is exact.
    again = load(BertForPreTraining, tmp_path / "ours")
    for (k, v), (k2, v2) in zip(ours.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert again.cls.predictions.decoder.weight is again.bert.embeddings.word_embeddings.weight


def test_sinusoidal_position_start_depends_only_on_the_offset():
    """The point of the sin/cos start: <p_i, p_j> is a function of j - i, at the configured scale."""
    cfg = BertConfig.from_size(
        "mini", vocab_size=300, position_init="sinusoidal", position_init_std=0.1
    )
    torch.manual_seed(0)
    pos = BertForPreTraining(cfg).bert.embeddings.position_embeddings.weight.detach().double()
    assert pos.std().item() == pytest.approx(0.1, rel=1e-5)
    gram = pos[:64] @ pos[:64].T  # (P, P)
    for k in (1, 2, 7):
        diagonal = torch.diagonal(gram, offset=k)
        assert (diagonal - diagonal[0]).abs().max() < 1e-6  # float32 storage
    assert torch.diagonal(gram, 1)[0] > torch.diagonal(gram, 7)[0]  # neighbours are most alike
    normal = BertForPreTraining(BertConfig.from_size("mini", vocab_size=300))
    assert normal.bert.embeddings.position_embeddings.weight.std().item() == pytest.approx(
        0.02, rel=0.05
    )
    with pytest.raises(ValueError, match="position_init 'learned'"):
        BertForPreTraining(BertConfig.from_size("tiny", vocab_size=300, position_init="learned"))


def test_bare_encoder_checkpoint_into_pretraining_model(minilm_dir):
    model = load(BertForPreTraining, minilm_dir)
    info = model.loading_info
    assert info["unexpected_keys"] == []
    assert info["missing_keys"] and all(k.startswith("cls.") for k in info["missing_keys"])


@pytest.mark.parametrize(
    "ours_cls,hf_name,kwargs",
    [
        ("BertForSequenceClassification", "BertForSequenceClassification", {"num_labels": 3}),
        ("BertForSequenceClassification", "BertForSequenceClassification", {"num_labels": 1}),
        ("BertForTokenClassification", "BertForTokenClassification", {"num_labels": 5}),
        ("BertForQuestionAnswering", "BertForQuestionAnswering", {}),
    ],
)
def test_task_heads_match_transformers_both_ways(tmp_path, ours_cls, hf_name, kwargs):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=500,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        attn_implementation="eager",
        **kwargs,
    )
    ref = getattr(transformers, hf_name)(cfg).eval()
    ref.save_pretrained(tmp_path / "hf")
    ours = load(getattr(ours_mod, ours_cls), tmp_path / "hf").eval()
    assert ours.loading_info == {"missing_keys": [], "unexpected_keys": []}
    ids = torch.randint(5, 500, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    with torch.no_grad():
        a = ours(ids, attention_mask=mask).logits
        r = ref(input_ids=ids, attention_mask=mask)
        b = r.logits if hasattr(r, "logits") else torch.stack([r.start_logits, r.end_logits], -1)
        assert (a - b).abs().max() <= 1e-5
        save(ours, tmp_path / "ours")
        back = (
            getattr(transformers, hf_name)
            .from_pretrained(str(tmp_path / "ours"), attn_implementation="eager")
            .eval()
        )
        r2 = back(input_ids=ids, attention_mask=mask)
        b2 = (
            r2.logits
            if hasattr(r2, "logits")
            else torch.stack([r2.start_logits, r2.end_logits], -1)
        )
        assert (a - b2).abs().max() <= 1e-5


def test_training_from_the_same_init_follows_transformers_step_by_step(tmp_path):
    """Gradients, not just outputs: 20 AdamW steps (dropout off, fp32) from one random init on
    the same masked batches (padding included) give the same losses and weights as transformers' model."""
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=300,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )
    ref = transformers.BertForPreTraining(cfg).train()
    ref.save_pretrained(tmp_path / "hf")
    ours = load(BertForPreTraining, tmp_path / "hf").train()
    opt_r = torch.optim.AdamW(ref.parameters(), lr=3e-3)
    opt_o = torch.optim.AdamW(ours.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(2)
    batches = []  # two batches seen again and again, so the loss can fall
    for _ in range(2):
        ids = torch.randint(5, 300, (4, 24), generator=g)
        mask = torch.ones_like(ids)
        mask[1, 17:] = 0
        labels = torch.where((torch.rand(ids.shape, generator=g) < 0.15) & mask.bool(), ids, -100)
        batches.append(
            (
                torch.where(labels != -100, 4, ids),
                mask,
                labels,
                torch.randint(0, 2, (4,), generator=g),
            )
        )
    losses = []
    for step in range(20):
        ids, mask, labels, nsp = batches[step % 2]
        o = ours(ids, None, mask, mlm_labels=labels, nsp_labels=nsp).loss
        r = ref(input_ids=ids, attention_mask=mask, labels=labels, next_sentence_label=nsp).loss
        for loss, opt in ((o, opt_o), (r, opt_r)):
            loss.backward()
            opt.step()
            opt.zero_grad()
        losses.append((o.item(), r.item()))
    assert losses[-1][0] < losses[0][0] - 0.5, (
        "the model must actually learn for this to mean anything"
    )
    for step, (a, b) in enumerate(losses):
        assert a == pytest.approx(b, abs=1e-4), f"step {step}: ours {a} vs transformers {b}"
    theirs = ref.state_dict()
    for name, v in ours.state_dict().items():
        # The key bias shifts every score of a query equally, so softmax makes its gradient zero
        # up to rounding, and Adam turns that rounding noise into full-size steps of either sign.
        if name.endswith("attention.self.key.bias"):
            continue
        torch.testing.assert_close(v, theirs[name], rtol=1e-3, atol=1e-4, msg=name)
