"""Stage pretrain: real training runs at the tiny preset, killed and resumed, DDP, MLflow read back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from bertpipe.config import preset_values
from history import history_problems, metric_steps

pytestmark = pytest.mark.slow


def make_project(
    root: Path, tiny_built, family: str = "bert", packing="auto", max_steps=None, **pretrain
) -> Path:
    """A folder with params.yaml (tiny + overrides; ``max_steps`` as the token budget of that
    many steps) and the tiny data stages' outputs."""
    root.mkdir(parents=True)
    (root / "family").write_text(family)
    data = preset_values("tiny")
    if max_steps is not None:
        per_step = data["pretrain"]["batch_size"] * data["pretrain_data"]["max_seq_length"]
        data["pretrain"]["budget"] = {"tokens": max_steps * per_step}
    data["pretrain"].update(
        {
            "precision": "32-true",
            "accelerator": "cpu",
            "devices": 1,
            "deterministic": True,
            "packing": packing,
            **pretrain,
        }
    )
    (root / "params.yaml").write_text(yaml.safe_dump(data))
    for name in ("pretrain", "tokenizer"):
        (root / name).symlink_to(tiny_built["root"] / name)
    return root


def stage_cmd(root: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bertpipe.stages.pretrain",
        "--params",
        str(root / "params.yaml"),
        "--family",
        (root / "family").read_text(),
        "--data",
        str(root / "pretrain"),
        "--tokenizer",
        str(root / "tokenizer"),
        "--out",
        str(root / "model"),
        "--checkpoints",
        str(root / "ckpt"),
        "--summary",
        str(root / "summary.json"),
        "--metrics",
        str(root / "metrics.json"),
        "--plots",
        str(root / "curves"),
    ]


def env_for(root: Path) -> dict:
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(root: Path) -> subprocess.CompletedProcess:
    out = subprocess.run(
        stage_cmd(root), cwd=root, env=env_for(root), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def mlflow_runs(root: Path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bertpipe")
    return client, client.search_runs([exp.experiment_id])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_built):
    root = make_project(
        tmp_path_factory.mktemp("pre") / "a",
        tiny_built,
        max_steps=24,
        checkpoint_every_n_steps=6,
        val_every_n_steps=12,
    )
    run(root)
    return root


_UNINTERRUPTED: dict[str, Path] = {}


@pytest.fixture
def reference_run(request, uninterrupted, tiny_built, tmp_path_factory):
    """The uninterrupted 24-step run of the test's family (BERT's is ``uninterrupted``)."""
    variant = request.node.callspec.params["family"]
    if variant == "bert":
        return uninterrupted
    if variant not in _UNINTERRUPTED:
        root = make_project(
            tmp_path_factory.mktemp("pre") / variant.replace("+", "-"),
            tiny_built,
            *variant_args(variant),
            max_steps=24,
            checkpoint_every_n_steps=6,
            val_every_n_steps=12,
        )
        run(root)
        _UNINTERRUPTED[variant] = root
    return _UNINTERRUPTED[variant]


def variant_args(variant: str) -> tuple:
    """``FAMILY`` (pretrain.packing: auto) or ``FAMILY+padded`` (false) -> (family, packing)."""
    family, _, padded = variant.partition("+")
    return family, (False if padded else "auto")


# BERT resumes packed (auto); GPT and ELMo train padded, so they cover the padded collator
# ("bert+padded" runs BERT padded, dropped from the list for the suite's time).
@pytest.mark.parametrize("family", ["bert", "gpt", "elmo"])
def test_resume_after_kill_gives_the_same_weights_and_one_run(
    reference_run, tiny_built, tmp_path, family
):
    uninterrupted = reference_run
    root = make_project(
        tmp_path / "b",
        tiny_built,
        *variant_args(family),
        max_steps=24,
        checkpoint_every_n_steps=6,
        val_every_n_steps=12,
    )
    proc = subprocess.Popen(
        stage_cmd(root),
        cwd=root,
        env=env_for(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # Killed as soon as the checkpoint of step 12, a validation step, appears (mid-epoch):
    # before it was saved after that validation, the resumed run never ran it.
    target = root / "ckpt" / "step0000012.ckpt"
    deadline = time.monotonic() + 240
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.exists() and not (root / "model").exists()

    out = run(root)
    assert "resuming from" in out.stderr
    # Only what the user needs: none of the library notices that say nothing to them.
    for noise in ("litlogger", "LeafSpec", "not resumable", "exists and is not empty", "Traceback"):
        assert noise not in out.stderr + out.stdout, noise
    a, b = weights(uninterrupted / "model"), weights(root / "model")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    client, runs = mlflow_runs(root)
    assert len(runs) == 1
    # One history across the kill: every metric at the uninterrupted run's steps, once each.
    ref_client, ref_runs = mlflow_runs(uninterrupted)
    reference = metric_steps(ref_client, ref_runs[0].info.run_id)
    first = {"bert": "mlm", "gpt": "lm", "elmo": "fwd_lm"}[variant_args(family)[0]]
    # auto packs the masked-LM families' batches; the language models train padded
    packed = mlflow_runs(root)[1][0].data.params["data/packed"]
    assert packed == str(family == "bert"), packed
    assert reference[f"val/{first}_acc"] == [12, 24]
    assert history_problems(reference, metric_steps(client, runs[0].info.run_id)) == []
    assert (root / "curves/val.csv").read_text() == (uninterrupted / "curves/val.csv").read_text()
    # Only the last K checkpoints are kept.
    assert sorted(p.name for p in (root / "ckpt").glob("step*.ckpt")) == [
        "step0000018.ckpt",
        "step0000024.ckpt",
    ]


def test_a_rerun_after_the_final_metrics_were_logged_logs_nothing_twice(uninterrupted, tmp_path):
    """Killed after the final metrics went to MLflow but before the stage ended: the rerun
    resumes from the last checkpoint, scores and logs again; the history must not double."""
    import shutil

    root = tmp_path / "again"
    shutil.copytree(uninterrupted, root, symlinks=True)
    shutil.rmtree(root / "model")  # DVC deletes a stage's outputs before running it
    out = run(root)
    assert "resuming from" in out.stderr
    client, runs = mlflow_runs(root)
    assert len(runs) == 1
    ref_client, ref_runs = mlflow_runs(uninterrupted)
    reference = metric_steps(ref_client, ref_runs[0].info.run_id)
    assert history_problems(reference, metric_steps(client, runs[0].info.run_id)) == []


def test_mlflow_run_holds_params_metrics_and_artifacts(uninterrupted):
    import json

    client, runs = mlflow_runs(uninterrupted)
    assert len(runs) == 1
    r = runs[0]
    assert r.info.status == "FINISHED"
    assert r.data.params["pretrain/budget/tokens"] == str(24 * 16 * 64)
    assert r.data.params["budget_steps"] == "24" and r.data.params["family"] == "bert"
    assert r.data.params["model/size"] == "tiny"
    assert r.info.run_name == "pretrain bert tiny" and r.data.tags["bertpipe.family"] == "bert"
    assert int(r.data.params["n_parameters"]) > 100_000
    for key in (
        "train/mlm_loss",
        "train/nsp_loss",
        "train/tokens_per_s",
        "val/mlm_acc",
        "val/nsp_acc",
        "val/perplexity",
        "used/flops",
        "val/unigram_baseline_acc",
    ):
        assert key in r.data.metrics, key
    # the last points of the curves are the final scores: no single-point copies of them
    assert not [k for k in r.data.metrics if k.startswith("final/")]
    assert r.data.tags["bertpipe.stage"] == "pretrain"
    arts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"model", "curves", "fill_mask"} <= arts
    model_files = {a.path for a in client.list_artifacts(r.info.run_id, "model")}
    assert {"model/config.json", "model/model.safetensors", "model/tokenizer.json"} <= model_files
    fill = [a.path for a in client.list_artifacts(r.info.run_id, "fill_mask")]
    assert fill and "[MASK]" in Path(client.download_artifacts(r.info.run_id, fill[-1])).read_text()
    metrics = json.loads((uninterrupted / "summary.json").read_text())
    assert metrics["steps"] == 24 and 0 <= metrics["val/mlm_acc"] <= 1
    # what the budget bought and what the run used, in tokens, FLOPs and seconds
    assert metrics["budget"]["steps"] == 24 and metrics["budget"]["tokens_per_step"] == 16 * 64
    assert metrics["used/tokens"] == 24 * 16 * 64
    assert metrics["used/flops"] == metrics["used/tokens"] * metrics["budget"]["flops_per_token"]
    assert 0 < metrics["used/seconds"] < 600
    assert (uninterrupted / "curves/train.csv").read_text().startswith("step,")
    # the DVC metrics file: the numbers worth diffing, the same as the summary's
    slim = json.loads((uninterrupted / "metrics.json").read_text())
    assert set(slim) == {"val/mlm_acc", "val/nsp_acc", "val/perplexity", "train/tokens_per_s"}
    assert all(slim[k] == metrics[k] for k in slim)


def test_exported_model_loads_in_transformers(uninterrupted):
    import transformers

    from bertpipe.models.bert import BertForPreTraining
    from bertpipe.models.bert_checkpoint import load

    ours = load(BertForPreTraining, uninterrupted / "model").eval()
    ref = transformers.AutoModelForPreTraining.from_pretrained(str(uninterrupted / "model")).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(uninterrupted / "model"))
    enc = tok("the man went to the [MASK] store .", return_tensors="pt")
    with torch.no_grad():
        a = ours(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"])
        b = ref(**enc)
    assert (a.mlm_logits - b.prediction_logits).abs().max() < 1e-4


def test_ddp_two_processes_on_cpu(tiny_built, tmp_path):
    root = make_project(
        tmp_path / "ddp",
        tiny_built,
        max_steps=12,  # the tokens of 12 one-process steps: 6 steps of two processes
        devices=2,
        strategy="ddp",
        checkpoint_every_n_steps=3,
        val_every_n_steps=3,
        limit_val_batches=2,
    )
    out = run(root)
    assert (root / "model" / "model.safetensors").exists()
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in out.stdout + out.stderr
    _, runs = mlflow_runs(root)
    assert len(runs) == 1
    import json

    metrics = json.loads((root / "summary.json").read_text())
    assert metrics["steps"] == 6 and metrics["used/tokens"] == 12 * 16 * 64


def test_a_wall_clock_budget_stops_the_run_and_is_recorded(tiny_built, tmp_path):
    import json

    root = make_project(tmp_path / "clock", tiny_built, "gpt", checkpoint_every_n_steps=100)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["pretrain"]["budget"] = {"tokens": 10_000 * 16 * 64, "seconds": 2.0}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    run(root)
    metrics = json.loads((root / "summary.json").read_text())
    assert metrics["budget"]["steps"] == 10_000 and metrics["budget"]["seconds_limit"] == 2.0
    assert 0 < metrics["steps"] < 10_000 and metrics["used/seconds"] >= 2.0
    assert metrics["used/tokens"] == metrics["steps"] * 16 * 64


def test_continued_mlflow_run_keeps_its_params_and_tags_changed_ones(tmp_path, monkeypatch):
    """Resuming with a raised max_steps must not fail on MLflow's no-changed-params rule."""
    from bertpipe import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    first = tracking.make_logger("e", "pretrain")
    first.log_hyperparams({"pretrain": {"max_steps": 40, "lr": 0.001}})
    again = tracking.make_logger("e", "pretrain", run_id=first.run_id)
    again.log_hyperparams({"pretrain": {"max_steps": 100, "lr": 0.001}, "n_parameters": 7})
    run = again.experiment.get_run(first.run_id)
    assert run.data.params == {
        "pretrain/max_steps": "40",
        "pretrain/lr": "0.001",
        "n_parameters": "7",
    }
    assert run.data.tags["changed_param.pretrain/max_steps"] == "100"


def test_compiled_pretraining_trains_the_same_weights_as_eager(tiny_built, tmp_path):
    """``pretrain.compile: true`` on CPU (``auto`` compiles on CUDA only): the in-place compiled
    network exports the same names and, over a few fp32 steps, the same weights."""
    roots = {
        c: make_project(tmp_path / str(c), tiny_built, max_steps=6, compile=c, val_every_n_steps=6)
        for c in (True, False)
    }
    outs = {c: run(root) for c, root in roots.items()}
    assert "compiling the bert network" in outs[True].stderr + outs[True].stdout
    assert "compiling" not in outs[False].stderr + outs[False].stdout
    compiled, eager = (weights(roots[c] / "model") for c in (True, False))
    assert compiled.keys() == eager.keys()
    worst = max((compiled[k] - eager[k]).abs().max().item() for k in eager)
    assert worst < 1e-4, worst
