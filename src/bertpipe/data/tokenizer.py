"""The BERT WordPiece tokenizer: built from HF ``tokenizers`` parts, trained, reused, saved.

Owns the tokenizer directory every later stage reads::

    tokenizer.json            the fast tokenizer (normaliser, pre-tokeniser, model, post-processor)
    vocab.txt                 one token per line, line number = id (what BERT checkpoints ship)
    tokenizer_config.json     so ``transformers.AutoTokenizer.from_pretrained(dir)`` loads it
    special_tokens_map.json

Parts follow BERT: ``BertNormalizer`` (clean text, Chinese characters split,
lowercasing and accent stripping configurable), ``BertPreTokenizer``, WordPiece
with ``##`` continuations, and a post-processor producing ``[CLS] A [SEP] B [SEP]``
with token_type_ids 0/1. Special-token ids are read from the vocabulary, never
assumed (ours are 0-4; bert-base-uncased's are 0 and 100-103).

Note: ``tokenizers``' WordPiece trainer learns merges BPE-style, not with
Google's likelihood criterion; the resulting vocabulary format is identical.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from bertpipe.config import TokenizerConfig
from bertpipe.data.shards import iter_sentences
from bertpipe.errors import UserError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


class TokenizerError(UserError, ValueError):
    """A vocabulary or tokenizer directory that cannot be used; the message says why."""


def _bert_parts(tok: Tokenizer, lowercase: bool, strip_accents: bool | None) -> Tokenizer:
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def _post_processor(tok: Tokenizer) -> None:
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )


def train_tokenizer(cfg: TokenizerConfig, files: Iterable[str | Path]) -> Tokenizer:
    """Train a WordPiece vocabulary of ``cfg.vocab_size`` on text files (one sentence per line)."""
    paths = [str(f) for f in files]
    if not paths:
        raise TokenizerError("no training files for the tokenizer (is the corpus output empty?)")
    tok = _bert_parts(
        Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100)),
        cfg.lowercase,
        cfg.strip_accents,
    )
    trainer = trainers.WordPieceTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        limit_alphabet=cfg.limit_alphabet,
        special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tok.train(paths, trainer)
    _post_processor(tok)
    return tok


def _read_vocab(path: Path) -> dict[str, int]:
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            token = line.rstrip("\n")
            if token in vocab:
                raise TokenizerError(f"{path}:{i + 1}: duplicate token {token!r}")
            vocab[token] = i
    return vocab


def resolve_dir(spec: str) -> Path:
    """A directory, or ``package:<module>`` for a pip package that ships a checkpoint."""
    if spec.startswith("package:"):
        import importlib

        name = spec.split(":", 1)[1]
        try:
            module = importlib.import_module(name)
        except ImportError:
            raise TokenizerError(
                f"{spec}: no installed package {name!r}; install the package that "
                "ships the checkpoint, or give its directory instead"
            ) from None
        if not hasattr(module, "get_model_path"):
            raise TokenizerError(
                f"{spec}: package {name!r} has no get_model_path(); it does not "
                "ship a checkpoint this way, give its directory instead"
            )
        return Path(module.get_model_path())
    return Path(spec).expanduser()


def load_existing(
    spec: str,
    lowercase: bool = True,
    strip_accents: bool | None = None,
    key: str = "tokenizer.reuse_from",
) -> Tokenizer:
    """Reuse a checkpoint's vocabulary: its ``tokenizer.json`` if present, else ``vocab.txt``.

    Casing comes from the checkpoint's ``tokenizer_config.json`` (``do_lower_case``)
    when it has one, so an uncased checkpoint is never fed cased text. ``key`` names
    where ``spec`` came from in error messages.
    """
    folder = resolve_dir(spec)
    if not folder.is_dir():
        raise TokenizerError(f"{key}: {folder} is not a checkpoint directory (no such directory)")
    config_path = folder / "tokenizer_config.json"
    if config_path.exists():
        conf = json.loads(config_path.read_text(encoding="utf-8"))
        lowercase = conf.get("do_lower_case", lowercase)
        strip_accents = conf.get("strip_accents", strip_accents)
    if (folder / "tokenizer.json").exists():
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        if not isinstance(tok.model, models.WordPiece):
            raise TokenizerError(
                f"{folder / 'tokenizer.json'}: model is {type(tok.model).__name__}, not WordPiece"
            )
    elif (folder / "vocab.txt").exists():
        vocab = _read_vocab(folder / "vocab.txt")
        tok = _bert_parts(
            Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100)),
            lowercase,
            strip_accents,
        )
    else:
        raise TokenizerError(f"{folder}: neither tokenizer.json nor vocab.txt found")
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        raise TokenizerError(f"{folder}: vocabulary lacks special tokens {missing}")
    # Checkpoints ship inference settings (sentence-transformers pads/truncates to 128): drop them.
    tok.no_padding()
    tok.no_truncation()
    _post_processor(tok)
    return tok


def save_tokenizer(tok: Tokenizer, folder: str | Path, model_max_length: int) -> Path:
    """Write the four files; the directory loads with ``AutoTokenizer.from_pretrained``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    vocab = tok.get_vocab()
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise TokenizerError("vocabulary ids are not contiguous; cannot write vocab.txt")
    (folder / "vocab.txt").write_text("".join(f"{t}\n" for t, _ in by_id), encoding="utf-8")
    norm = json.loads(tok.to_str())["normalizer"] or {}
    special = {
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": bool(norm.get("lowercase", True)),
        "strip_accents": norm.get("strip_accents"),
        "tokenize_chinese_chars": True,
        "model_max_length": model_max_length,
        **special,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return folder


def load_tokenizer(folder: str | Path) -> Tokenizer:
    path = Path(folder) / "tokenizer.json"
    if not path.exists():
        raise TokenizerError(
            f"{path}: missing; run the tokenizer stage first (dvc repro tokenizer)"
        )
    return Tokenizer.from_file(str(path))


def copy_tokenizer_files(src: str | Path, dst: str | Path) -> None:
    """Put the tokenizer files beside model weights, so the model directory is self-contained."""
    for name in FILES:
        if (Path(src) / name).exists():
            shutil.copy2(Path(src) / name, Path(dst) / name)


def tokenizer_stats(tok: Tokenizer, files: Iterable[str | Path], max_sentences: int) -> dict:
    """[UNK] rate and tokens per whitespace word on held-out sentences."""
    unk = tok.token_to_id("[UNK]")
    if unk is None:
        raise TokenizerError("the vocabulary has no [UNK] token")
    sentences = list(iter_sentences(files, max_sentences))
    tokens = unks = words = 0
    for start in range(0, len(sentences), 4096):
        chunk = sentences[start : start + 4096]
        for enc in tok.encode_batch(chunk, add_special_tokens=False):
            tokens += len(enc.ids)
            unks += enc.ids.count(unk)
        words += sum(len(s.split()) for s in chunk)
    return {
        "vocab_size": tok.get_vocab_size(),
        "sentences": len(sentences),
        "words": words,
        "tokens": tokens,
        "unk_rate": unks / tokens if tokens else None,
        "tokens_per_word": tokens / words if words else None,
    }
