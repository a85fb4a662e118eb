"""Task kinds own encoding, collation, heads and evaluators; nothing else branches on the kind."""

from __future__ import annotations

import re
from pathlib import Path

import datasets
import pytest
import torch

from bertpipe.config import (
    BertModelConfig,
    FinetuneConfig,
    FinetuneHParams,
    ModelConfig,
    UserTaskConfig,
)
from bertpipe.data.tokenizer import load_existing
from bertpipe.labels import IGNORE_INDEX
from bertpipe.tasks.kinds import KINDS
from bertpipe.tasks.spec import resolve_task
from bertpipe.training.finetuning_data import TaskDataModule
from bertpipe.training.starting_points import build_task_model
from conftest import MINILM

SRC = Path(__file__).parents[1] / "src" / "bertpipe"
HP = FinetuneHParams(max_length=16, batch_size=4, doc_stride=4)


@pytest.fixture(scope="module")
def tok():
    return load_existing(MINILM)


def test_sentence_pairs_encode_as_one_sequence_with_segments(tok):
    ds = datasets.Dataset.from_list(
        [
            {"text_a": "a cat sat", "text_b": "on the mat", "label": 1},
            {"text_a": "x " * 40, "text_b": "y", "label": 0},
        ]
    )
    enc = KINDS["classification"].encode(tok, ds, HP, train=True)
    first = enc.rows[0]
    assert (
        tok.decode(first["input_ids"], skip_special_tokens=False)
        == "[CLS] a cat sat [SEP] on the mat [SEP]"
    )
    assert first["token_type_ids"] == [0] * 5 + [1] * 4 and first["label"] == 1
    assert len(enc.rows[1]["input_ids"]) == 16  # truncated to max_length
    batch = KINDS["classification"].collate(enc.rows, pad_id=0)
    assert batch["input_ids"].shape == (2, 16) and batch["labels"].tolist() == [1, 0]
    assert batch["attention_mask"][0].tolist() == [1] * 9 + [0] * 7


def test_tags_go_to_the_first_subword_and_pad_with_ignore_index(tok):
    ds = datasets.Dataset.from_list([{"tokens": ["Gatsby", "waited"], "tags": [1, 0]}])
    enc = KINDS["token_classification"].encode(tok, ds, HP, train=True)
    pieces = [tok.id_to_token(i) for i in enc.rows[0]["input_ids"]]
    assert pieces == ["[CLS]", "ga", "##ts", "##by", "waited", "[SEP]"]
    assert enc.rows[0]["tags"] == [IGNORE_INDEX, 1, IGNORE_INDEX, IGNORE_INDEX, 0, IGNORE_INDEX]
    batch = KINDS["token_classification"].collate(enc.rows, pad_id=0)
    assert (
        batch["labels"].shape == (1, 8)
        and (batch["labels"][0, len(pieces) :] == IGNORE_INDEX).all()
    )


def test_qa_rows_carry_span_targets_in_training_and_feature_ids_in_dev(tok):
    context = (
        "the bridge is the golden gate in san francisco , painted orange since 1937 by the city"
    )
    row = {
        "id": "q",
        "title": "t",
        "context": context,
        "question": "which bridge?",
        "answers": {"text": ["golden gate"], "answer_start": [context.index("golden")]},
    }
    qa = KINDS["qa"]
    train = qa.collate(qa.encode(tok, datasets.Dataset.from_list([row]), HP, train=True).rows, 0)
    dev = qa.encode(tok, datasets.Dataset.from_list([row]), HP, train=False)
    assert {"start_positions", "end_positions"} <= set(train) and "feature" not in train
    assert (
        "feature" in qa.collate(dev.rows, 0) and dev.examples == 1 and len(dev.rows) > 1
    )  # windows


@pytest.mark.parametrize(
    "task,head,labels",
    [
        ("cola", "BertForSequenceClassification", 2),
        ("stsb", "BertForSequenceClassification", 1),
        ("squad", "BertForQuestionAnswering", 2),
    ],
)
def test_each_kind_builds_its_head_from_the_model_section(tok, task, head, labels):
    spec = resolve_task(task, FinetuneConfig())
    model, family = build_task_model(
        spec, "scratch", None, ModelConfig(bert=BertModelConfig(size="tiny")), tok
    )
    assert type(model).__name__ == head and family.name == "bert"
    assert model.config.num_labels == labels and model.config.vocab_size == tok.get_vocab_size()


def test_a_user_task_loads_encodes_and_batches_through_its_kind(tmp_path, tok):
    rows = "\n".join(
        f"{'good' if i % 2 else 'bad'} film {i},{'pos' if i % 2 else 'neg'}" for i in range(10)
    )
    (tmp_path / "t.csv").write_text("text,y\n" + rows + "\n")
    cfg = FinetuneConfig(
        tasks=["mine"],
        user_tasks={
            "mine": UserTaskConfig(
                kind="classification",
                train=str(tmp_path / "t.csv"),
                dev=str(tmp_path / "t.csv"),
                text_a="text",
                label="y",
            )
        },
    )
    spec = resolve_task("mine", cfg)
    assert spec.labels == ("neg", "pos") and spec.metrics == ("acc", "macro_f1")
    dm = TaskDataModule(spec, tok, FinetuneHParams(batch_size=4, max_train_examples=6), seed=1)
    dm.setup()
    assert len(dm.train.rows) == 6 and dm.dev.examples == 10
    batch = next(iter(dm.val_dataloader()))
    assert batch["labels"].tolist() == [0, 1, 0, 1] and batch["input_ids"].dtype == torch.long


def test_no_module_outside_the_task_kinds_dispatches_on_the_kind():
    pattern = re.compile(r"\bkind\s*(==|!=|in)\s*['\"(\[{]|\.kind\s*(==|!=)")
    offenders = [
        f"{path.relative_to(SRC)}:{n}: {line.strip()}"
        for path in SRC.rglob("*.py")
        if path.name != "kinds.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
