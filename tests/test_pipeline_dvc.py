"""The DVC DAG end to end at the tiny preset: repro, no-op rerun, selective rerun, atomic outputs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import copy_working_tree

pytestmark = [pytest.mark.slow, pytest.mark.mirror]


def _env(extra: dict | None = None) -> dict:
    """This environment with the venv's tools first on PATH (unless ``extra`` sets PATH),
    tracking to the project's own mlflow.db."""
    env = {**os.environ, **(extra or {})}
    if "PATH" not in (extra or {}):
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _flow_env(tmp: Path) -> dict:
    """Settings for a flow run: its own Prefect home (temporary server), one thread per process."""
    return {
        "PREFECT_HOME": str(tmp / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "OMP_NUM_THREADS": "1",
    }


def sh(args, cwd, check=True, env_extra=None, **kw):
    out = subprocess.run(args, cwd=cwd, env=_env(env_extra), text=True, capture_output=True, **kw)
    if check and out.returncode:
        raise AssertionError(f"{args} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A fresh git clone of the working tree's tracked files, as a user would have."""
    return copy_working_tree(tmp_path_factory.mktemp("clone") / "bertpipe")


def _flow(project, tmp):
    result = tmp / "flow_result.json"
    sh(
        [sys.executable, "-m", "flows.pipeline", "--preset", "tiny", "--result", str(result)],
        project,
        # README's command as written, no venv activated: nothing of the venv on PATH.
        env_extra={**_flow_env(tmp), "PATH": "/usr/bin:/bin"},
    )
    return json.loads(result.read_text())


ECHO_STAGE = """
  summary:
    cmd: python -c "import json; print(json.load(open('reports/metrics.json'))['glue_average'])" > summary.txt
    deps: [reports/metrics.json]
    outs: [summary.txt]
"""


def test_flow_runs_tiny_then_skips_everything_then_dvc_noop_and_selective(project, tmp_path):
    """The Prefect flow runs the whole tiny DAG (temporary local server), a stage added to
    dvc.yaml included; a second flow run finds nothing changed; plain DVC agrees; a param
    change reruns only what depends on it."""
    dvc_yaml = project / "dvc.yaml"
    original = dvc_yaml.read_text()
    dvc_yaml.write_text(original.replace("\nplots:\n", ECHO_STAGE + "\nplots:\n"))
    first = _flow(project, tmp_path)
    assert [r["stage"] for r in first["stages"]][-1] == "summary"  # after evaluate, no flow edit
    ran = {r["stage"] for r in first["stages"] if r["ran"]}
    assert {"corpus", "tokenizer", "pretrain_data", "evaluate", "summary"} <= ran
    assert {f"pretrain@{f}" for f in FAMILIES} <= ran
    assert "pretrained" in (project / "summary.txt").read_text()
    assert {f"finetune@{t}" for t in RAN + SKIPPED} <= ran
    # one registered model per pretrained family that a task fine-tuned from (it competes by
    # that init's GLUE average), one per task
    assert all(p["promoted"] for p in first["promoted"])
    assert len(first["promoted"]) == len(TUNED) + len(RAN)
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["tokenizer"]["params"]["params.yaml"]["tokenizer"]["vocab_size"] == 2000
    stats = json.loads((project / "results/pretrain_data_stats.json").read_text())
    assert stats["train"]["instances"] > 1000
    assert (project / "models/tokenizer/tokenizer.json").exists()
    _check_finetune_and_report(project, first["mlflow_run_id"])

    start = time.monotonic()
    second = _flow(project, tmp_path)
    flow_s = time.monotonic() - start
    assert not any(r["ran"] for r in second["stages"]) and second["promoted"] == []
    print(f"second flow run (nothing changed), server start included: {flow_s:.1f} s")

    start = time.monotonic()
    out = sh([sys.executable, "-m", "dvc", "repro"], project)
    noop_s = time.monotonic() - start
    assert "Data and pipelines are up to date" in out.stdout
    print(f"no-op dvc repro: {noop_s:.2f} s")

    sh(["git", "add", "-A"], project)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"], project)
    out = sh(
        [
            sys.executable,
            "-m",
            "dvc",
            "exp",
            "run",
            "-S",
            "tokenizer.vocab_size=1500",
            "pretrain_data",
        ],
        project,
    )
    assert "Stage 'corpus' didn't change, skipping" in out.stdout
    assert (
        "Running stage 'tokenizer'" in out.stdout and "Running stage 'pretrain_data'" in out.stdout
    )
    tok = json.loads((project / "metrics/tokenizer.json").read_text())
    assert tok["vocab_size"] == 1500
    sh(["git", "checkout", "--", "params.yaml", "dvc.lock", "metrics"], project)
    sh([sys.executable, "-m", "dvc", "checkout", "--force"], project)
    # One family's params: only that family's pretraining reruns, and fine-tuning retrains
    # only its starting point (the other inits' finished seeds are reused).
    out = sh(
        [sys.executable, "-m", "dvc", "exp", "run", "-S", "model.gpt.dropout=0.05", "finetune@rte"],
        project,
    )
    log = out.stdout + out.stderr
    assert "Running stage 'pretrain@gpt'" in log
    for other in ("bert", "elmo", "modern"):
        assert f"Running stage 'pretrain@{other}'" not in log
    assert "finetune rte/pretrained/seed1: done before, reusing" in log
    assert "finetune rte/pretrained_elmo/seed2: done before, reusing" in log
    assert "finetune rte/pretrained_gpt/seed1: done before" not in log
    # Back to the committed tiny state (the experiment stopped at pretrain_data), so the
    # tests below start from an up-to-date DAG.
    sh(["git", "checkout", "--", "params.yaml", "dvc.lock", "metrics"], project)
    sh([sys.executable, "-m", "dvc", "checkout", "--force"], project)
    assert "up to date" in sh([sys.executable, "-m", "dvc", "status"], project).stdout


def _stage_metric(project, task: str) -> tuple[str, float]:
    """The finetune stage's dev score of the exported model (the first init's best seed)."""
    summary = json.loads((project / f"results/finetune/{task}.json").read_text())
    init = summary["exported_model"]["init"]
    seed = summary["exported_model"]["seed"]
    run = next(r for r in summary["results"][init]["runs"] if r["seed"] == seed)
    return summary["selection_metric"], run["metrics"][summary["selection_metric"]]


def _predict(project, tmp, model, data, *extra):
    out = tmp / (Path(str(model)).parent.name + ".jsonl")
    res = sh(
        [
            sys.executable,
            "-m",
            "bertpipe.cli",
            "predict",
            str(data),
            "--model",
            str(model),
            "--out",
            str(out),
            "--quiet",
            *extra,
        ],
        project,
    )
    return [json.loads(line) for line in out.read_text().splitlines()], res.stdout


def test_the_trained_models_predict_load_from_mlflow_and_serve(project, tmp_path):
    """What the flow made, used: `bertpipe predict` on real mirror files (classification,
    tagging, QA) with --score equal to the stage's dev metric; the registered MLflow Model
    loads as pyfunc and predicts the same; `mlflow models serve` answers; the runs carry
    their lineage and names and none is left RUNNING."""
    import mlflow
    import pandas as pd

    mirror = Path(os.environ["BERTPIPE_DATA_MIRROR"])
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    os.environ.update(env)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    # 1. classification: the exported model scores the dev file as the stage did
    rte_dev = mirror / "glue/RTE/dev.tsv"
    records, out = _predict(
        project,
        tmp_path,
        project / "results/finetune/rte/model",
        rte_dev,
        "--score",
        "--max-examples",
        "64",
    )
    metric, value = _stage_metric(project, "rte")
    assert f"{metric} {value:.2f}" in out, out
    assert len(records) == 64 and {"label", "probabilities"} <= set(records[0])
    assert abs(sum(records[0]["probabilities"].values()) - 1) < 1e-4
    # 2. tagging, real WSJ sentences: a tag per word, and the stage's token accuracy
    pos = project / "results/finetune/ptb_pos/model"
    records, out = _predict(
        project,
        tmp_path,
        pos,
        mirror / "tagging/ptb_pos_sample/dev.conll",
        "--score",
        "--max-examples",
        "64",
    )
    metric, value = _stage_metric(project, "ptb_pos")
    assert f"{metric} {value:.2f}" in out, out
    assert all(len(r["tags"]) == len(r["tokens"]) for r in records)
    # 3. QA on the official SQuAD dev file: answers are spans of their contexts
    records, out = _predict(
        project,
        tmp_path,
        project / "results/finetune/squad/model",
        mirror / "squad/v1.1/dev.json.gz",
        "--score",
        "--max-examples",
        "64",
    )
    metric, value = _stage_metric(project, "squad")
    assert f"{metric} {value:.2f}" in out, out
    assert len(records) == 64 and all(isinstance(r["start"], int) for r in records)
    # 4. bad input: a clear error, never a traceback
    empty = tmp_path / "empty.tsv"
    empty.write_text("sentence1\tsentence2\n")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("text,other\na,b\n")
    for data, model, message in (
        (empty, project / "results/finetune/rte/model", "no examples to predict"),
        (wrong, project / "results/finetune/rte/model", "no column 'sentence1'"),
        (rte_dev, project / "models/pretrained/bert", "no task head"),
    ):
        res = sh(
            [
                sys.executable,
                "-m",
                "bertpipe.cli",
                "predict",
                str(data),
                "--model",
                str(model),
                "--out",
                str(tmp_path / "x.jsonl"),
            ],
            project,
            check=False,
        )
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    # 5. the registered model is an MLflow Model: pyfunc predicts what `bertpipe predict` does
    frame = pd.read_csv(rte_dev, sep="\t", quoting=3).head(16)
    model = mlflow.pyfunc.load_model("models:/bertpipe-rte@champion")
    assert model.metadata.signature is not None
    got = model.predict(frame)
    cli, _ = _predict(
        project, tmp_path, "models:/bertpipe-rte@champion", rte_dev, "--max-examples", "16"
    )
    assert list(got["label"]) == [r["label"] for r in cli]
    for name in ("entailment", "not_entailment"):
        assert list(got[f"p_{name}"]) == [r["probabilities"][name] for r in cli]
    pretrained = mlflow.pyfunc.load_model("models:/bertpipe-pretrained@champion")
    assert (
        "[MASK]"
        not in pretrained.predict(pd.DataFrame({"text": ["the [MASK] ."]}))["predictions"][0]
    )
    # 6. `mlflow models serve` answers POST /invocations on loopback
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/bertpipe-rte@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=project,
        env=_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        body = json.dumps({"dataframe_records": frame.head(4).to_dict(orient="records")})
        deadline = time.monotonic() + 120
        while True:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations",
                    body.encode(),
                    {"Content-Type": "application/json"},
                )
                answer = json.loads(urllib.request.urlopen(req, timeout=30).read())
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "serve died"
                time.sleep(1)
        assert [p["label"] for p in answer["predictions"]] == list(got["label"][:4])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    # 7. MLflow read-back: lineage, names, tags after the stage, no run left RUNNING
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("bertpipe")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert runs and not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    data_md5 = next(o["md5"] for o in lock["pretrain_data"]["outs"] if o["path"] == "data/pretrain")
    by_name = {r.info.run_name: r for r in runs}
    bert = by_name["pretrain bert tiny"]
    inputs = {d.dataset.name: d.dataset for d in bert.inputs.dataset_inputs}
    assert inputs["pretrain_data/train"].digest == data_md5
    assert json.loads(inputs["pretrain_data/train"].profile)["num_rows"] > 1000
    rte = by_name["rte/pretrained/seed1"]
    names = {
        d.dataset.name: json.loads(d.dataset.profile)["num_rows"] for d in rte.inputs.dataset_inputs
    }
    assert names == {"rte/train": 96, "rte/dev": 64}
    assert rte.data.tags["dvc.out.metrics/finetune/rte.json"] == next(
        o["md5"] for o in lock["finetune@rte"]["outs"] if o["path"] == "metrics/finetune/rte.json"
    )
    # system metrics: sampled every second while a run trains (a tiny fine-tuning run is
    # shorter than that; the pretraining runs are not)
    pretrain_runs = [r for r in runs if r.info.run_name.startswith("pretrain ")]
    assert any(k.startswith("system/") for r in pretrain_runs for k in r.data.metrics)
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"
    assert [r for r in runs if r.info.run_name.startswith("pipeline tiny ")]


def test_the_html_report_renders_in_a_real_browser(project, tmp_path):
    """reports/index.html opened by headless Chromium: its tables are in the rendered DOM, its
    pictures are embedded (no file or network needed), and the screenshot is a page of
    text and plots, not a blank one."""
    from PIL import Image

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    page = project / "reports/index.html"
    alone = tmp_path / "alone" / "index.html"  # nothing beside it: everything is inside
    alone.parent.mkdir()
    shutil.copy(page, alone)
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run(
        [*flags, "--dump-dom", alone.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    assert dom.count("<table") >= 2 and "What each kind of pretraining bought" in dom
    images = re.findall(r'<img[^>]+src="([^"]{0,30})', dom)
    assert len(images) >= 4 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "attention" in dom and "workflowType=machine_learning" in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,3000", alone.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 3000)
    assert len(set(image.tobytes()[::3])) > 50  # rendered text and plots, not one colour


# These two need the up-to-date DAG the first test leaves; the `minutes` tests below change it.
def test_bad_params_fail_the_stage_with_the_message(project):
    params = project / "params.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("  min_doc_words:", "  min_doc_wrds:"))
        out = sh([sys.executable, "-m", "dvc", "repro", "corpus"], project, check=False)
        assert out.returncode != 0
        assert (
            "corpus.min_doc_wrds: unknown key. Did you mean 'min_doc_words'?"
            in out.stderr + out.stdout
        )
    finally:
        params.write_text(original)
    # DVC removed the stage's outputs before running it; its cache still has them, so
    # nothing is recomputed to get them back.
    assert not (project / "data/corpus").exists()
    sh([sys.executable, "-m", "dvc", "checkout"], project)
    out = sh([sys.executable, "-m", "dvc", "repro"], project).stdout
    assert "Running stage" not in out and (project / "data/corpus/train").is_dir()


def test_killed_stage_leaves_no_partial_output(project, tmp_path):
    """SIGKILL mid-stage: the final folder keeps the last complete output, a rerun completes."""
    before = sorted(p.name for p in (project / "data/pretrain/train").iterdir())
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bertpipe.stages.pretrain_data",
            "--corpus",
            "data/corpus",
            "--tokenizer",
            "models/tokenizer",
            "--out",
            "data/pretrain",
            "--stats",
            str(tmp_path / "s.json"),
            "--metrics",
            str(tmp_path / "m.json"),
        ],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    partial = project / "data/.pretrain.partial"
    deadline = time.monotonic() + 60
    while not partial.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert sorted(p.name for p in (project / "data/pretrain/train").iterdir()) == before
    assert not (tmp_path / "s.json").exists()
    sh(
        [
            sys.executable,
            "-m",
            "bertpipe.stages.pretrain_data",
            "--corpus",
            "data/corpus",
            "--tokenizer",
            "models/tokenizer",
            "--out",
            "data/pretrain",
            "--stats",
            str(tmp_path / "s.json"),
            "--metrics",
            str(tmp_path / "m.json"),
        ],
        project,
    )
    assert not partial.exists() and (tmp_path / "s.json").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(cmd, env, url, log, timeout=120):
    import httpx

    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, f"{cmd[0]} exited"
        time.sleep(1)
    raise AssertionError(f"{cmd} not up after {timeout}s")


@pytest.mark.minutes
def test_flow_against_loopback_mlflow_prefect_and_s3_servers(project, tmp_path):
    """The services of infra/docker-compose.yml, natively on loopback: an S3-compatible server
    (moto) as MLflow's artifact store and the DVC remote, an MLflow server, a Prefect server."""
    import boto3
    import mlflow

    s3_port, mlflow_port, prefect_port = _free_port(), _free_port(), _free_port()
    s3_url = f"http://127.0.0.1:{s3_port}"
    env = _env(
        {
            **_flow_env(tmp_path),
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_S3_ENDPOINT_URL": s3_url,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
    )
    log = open(tmp_path / "services.log", "w")  # noqa: SIM115 - closed in the finally below
    procs = []
    try:
        procs.append(
            _serve(["moto_server", "-H", "127.0.0.1", "-p", str(s3_port)], env, s3_url, log)
        )
        s3 = boto3.client(
            "s3",
            endpoint_url=s3_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        for bucket in ("mlflow", "dvc"):
            s3.create_bucket(Bucket=bucket)
        procs.append(
            _serve(
                [
                    "mlflow",
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(mlflow_port),
                    "--workers",
                    "1",
                    "--backend-store-uri",
                    f"sqlite:///{tmp_path / 'mlflow-server.db'}",
                    "--artifacts-destination",
                    "s3://mlflow",
                    "--serve-artifacts",
                ],
                env,
                f"http://127.0.0.1:{mlflow_port}/health",
                log,
            )
        )
        procs.append(
            _serve(
                ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
                env,
                f"http://127.0.0.1:{prefect_port}/api/health",
                log,
            )
        )
        env.update(
            MLFLOW_TRACKING_URI=f"http://127.0.0.1:{mlflow_port}",
            PREFECT_API_URL=f"http://127.0.0.1:{prefect_port}/api",
        )
        sh(
            [sys.executable, "-m", "dvc", "remote", "add", "--force", "-d", "s3", "s3://dvc"],
            project,
        )
        sh([sys.executable, "-m", "dvc", "remote", "modify", "s3", "endpointurl", s3_url], project)

        result = tmp_path / "result.json"
        # Two tasks, one seed: a params change that reruns fine-tuning and evaluation (not pretraining).
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "flows.pipeline",
                "--preset",
                "tiny",
                "--set",
                "finetune.tasks=[wnli,cola]",
                "--set",
                "finetune.seeds=[3]",
                "--result",
                str(result),
            ],
            cwd=project,
            env=env,
            text=True,
            capture_output=True,
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        flow = json.loads(result.read_text())
        assert flow["pulled"] and flow["pushed"]
        assert {r["stage"] for r in flow["stages"] if r["ran"]} == {
            "finetune@wnli",
            "finetune@cola",
            "evaluate",
            "summary",  # the stage the first test added to dvc.yaml, after evaluate
        }

        client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
        run_id = flow["mlflow_run_id"]
        assert "report" in {a.path for a in client.list_artifacts(run_id)}
        nested = client.search_runs(
            [client.get_run(run_id).info.experiment_id],
            f"tags.`mlflow.parentRunId` = '{run_id}'",
            max_results=100,
        )
        assert len(nested) == 2 * len(INITS)  # two tasks, one seed, every init
        # Both ways: the MLflow run names its Prefect flow run, which holds a link back.
        flow_run_id = client.get_run(run_id).data.tags["prefect.flow_run_id"]
        links = subprocess.run(
            [
                sys.executable,
                "-c",
                "import asyncio, json, sys, uuid\n"
                "from prefect.client.orchestration import get_client\n"
                "from prefect.client.schemas.filters import ArtifactFilter, "
                "ArtifactFilterFlowRunId\n"
                "async def main():\n"
                "    async with get_client() as c:\n"
                "        arts = await c.read_artifacts(artifact_filter=ArtifactFilter("
                "flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(sys.argv[1])])))\n"
                "        print(json.dumps({a.key: a.data for a in arts}))\n"
                "asyncio.run(main())\n",
                flow_run_id,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        artifacts = json.loads(links.stdout or "{}")
        assert run_id in artifacts.get("mlflow-run", ""), links.stdout + links.stderr[-2000:]
        assert "bertpipe-results" in artifacts
        assert int(client.get_model_version_by_alias("bertpipe-cola", "champion").version) == 1
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mlflow").get("Contents", [])]
        assert any(k.endswith("report/report.md") for k in keys)  # artifacts went to S3

        # The DVC remote round trip: drop the local cache and an output, pull them back.
        assert s3.list_objects_v2(Bucket="dvc")["KeyCount"] > 0
        shutil.rmtree(project / ".dvc/cache")
        shutil.rmtree(project / "results/finetune/cola")
        sh(
            [sys.executable, "-m", "dvc", "pull"],
            project,
            env_extra={
                k: env[k]
                for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
            },
        )
        assert (project / "results/finetune/cola/model/model.safetensors").exists()
        assert "up to date" in sh([sys.executable, "-m", "dvc", "status"], project).stdout
    finally:
        for proc in procs:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
        log.close()
        subprocess.run(
            [sys.executable, "-m", "dvc", "remote", "remove", "s3"], cwd=project, check=False
        )


@pytest.mark.minutes
def test_flow_killed_during_pretrain_resumes_from_the_checkpoint(project, tmp_path):
    """SIGKILL the whole flow (the worker) mid-pretrain; the rerun continues the checkpoints
    and the MLflow run instead of starting over. (The 40-step run before it has another
    schedule, so the 300-step run starts afresh, in a new MLflow run.)"""
    env = _env(_flow_env(tmp_path))
    ckpts = project / "checkpoints/pretrain/bert"
    forty_step_run = (ckpts / "mlflow_run_id").read_text()
    cmd = [
        sys.executable,
        "-m",
        "flows.pipeline",
        "--preset",
        "tiny",
        "--set",
        f"pretrain.budget.tokens={300 * 16 * 64}",  # 300 tiny steps
        "--set",
        "finetune.tasks=[wnli]",
        "--set",
        "finetune.seeds=[3]",
        "--result",
        str(tmp_path / "r.json"),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    while not (ckpts / "step0000060.ckpt").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)  # let the checkpoint file be complete
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run_id = (ckpts / "mlflow_run_id").read_text()
    assert run_id != forty_step_run
    # The stage's outputs went before its command ran (as `dvc repro` removes them); the
    # kill left none, old or half-made
    for out in (
        "results/pretrain/bert.json",
        "metrics/pretrain/bert.json",
        "models/pretrained/bert",
    ):
        assert not (project / out).exists(), out
    out = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert json.loads((project / "results/pretrain/bert.json").read_text())["steps"] == 300
    assert (ckpts / "mlflow_run_id").read_text() == run_id  # the same MLflow run continued
    import mlflow

    history = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}").get_metric_history(
        run_id.strip(), "train/mlm_loss"
    )
    steps = [m.step for m in history]
    # Restarting from step 40 would have logged steps 45..60 twice; resuming from 60 does not.
    # (300 steps: at 2026-12-01 speed 40 -> 100 finished in the 2 s after step 60 was saved.)
    assert max(steps) >= 295 and all(steps.count(k) == 1 for k in steps if k <= 60)
    # Every run of the killed flow and of its rerun ended: the killed flow's pipeline run was
    # closed (KILLED) by the rerun, which ended its own FINISHED.
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bertpipe")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    pipelines = [r for r in runs if r.data.tags.get("bertpipe.stage") == "pipeline"]
    assert {r.info.status for r in pipelines} >= {"KILLED", "FINISHED"}


RAN = ("cola", "stsb", "rte", "squad", "ptb_pos", "conll2000_chunk")  # train + dev in the mirror
SKIPPED = ("qqp",)  # no training data in the mirror
INITS = (
    "pretrained",
    "scratch",
    "pretrained_gpt",
    "pretrained_elmo",
    "scratch_lstm",
)
FAMILIES = ("bert", "gpt", "elmo", "modern")  # the tiny preset pretrains every family
TUNED = ("bert", "gpt", "elmo")  # ... and fine-tunes from these (modern: test_finetune_tasks)


def _check_finetune_and_report(project, run_id):
    """Every task with training data in the mirror ran from both inits; the rest are skipped notes."""
    for task in RAN:
        summary = json.loads((project / f"results/finetune/{task}.json").read_text())
        for init in INITS:  # every family, end to end
            runs = summary["results"][init]["runs"]
            assert [r["seed"] for r in runs] == [1, 2]
            stats = summary["results"][init]["summary"][summary["selection_metric"]]
            assert stats["min"] <= stats["median"] <= stats["max"]
        assert (project / f"results/finetune/{task}/model/model.safetensors").exists()
        assert (project / f"results/finetune/{task}/predictions/scratch/seed2.json").exists()
    for task in SKIPPED:
        assert (
            "is not in the mirror"
            in json.loads((project / f"results/finetune/{task}.json").read_text())["skipped"]
        )
    report = (project / "reports/report.md").read_text()
    for task in RAN:
        assert f"| {task} |" in report
    assert "## Skipped tasks" in report and "**qqp**" in report and "GLUE average" in report
    # the seeds' table: a row per starting point, the budget of each pretrained family
    assert "## What each kind of pretraining bought, at the same compute" in report
    for row in (
        "supervised LSTM (+attention)",
        "ELMo-style biLM",
        "GPT-style LM",
        "BERT from scratch",
    ):
        assert row in report
    assert report.count("0.04 M tokens") >= len(TUNED) and "96.37" in report and "93.65" in report
    assert "BERT-Tiny (L2/H128)" in report and "Turc et al. (2019)" in report
    assert {p.name for p in (project / "reports/plots").iterdir()} == {
        "attention.png",
        "finetune_scores.png",
        "pretrain_curves.png",
        "score_vs_compute.png",
        # the exported models' dev predictions: every task but SQuAD
        *(f"predictions_{t}.png" for t in RAN if t != "squad"),
    }
    assert "## What the exported models predict" in report
    assert "rte: pretrained, seed" in report and "confusion (counts" in report
    assert "stsb: pretrained, seed" in report and "predicted against gold scores" in report
    summary = json.loads((project / "reports/summary.json").read_text())
    assert set(summary["tasks"]) == set(RAN) and set(summary["skipped"]) == set(SKIPPED)
    assert json.loads((project / "reports/metrics.json").read_text()) == {
        "glue_average": summary["glue_average"]
    }
    # DVC sees the declared metrics (what `dvc metrics diff` compares): numbers only, one
    # median per init for a task, none for a skipped one.
    shown = json.loads(
        sh([sys.executable, "-m", "dvc", "metrics", "show", "--json"], project).stdout
    )
    files = {k: v["data"] for k, v in next(iter(shown.values()))["data"].items()}
    assert "reports/metrics.json" in files and set(files["metrics/finetune/cola.json"]) == set(
        INITS
    )
    assert files["metrics/finetune/qqp.json"] == {}

    def leaves(d):
        return [x for v in d.values() for x in (leaves(v) if isinstance(v, dict) else [v])]

    assert all(isinstance(v, int | float) for d in files.values() for v in leaves(d)), files
    width = max(
        map(len, sh([sys.executable, "-m", "dvc", "metrics", "show"], project).stdout.splitlines())
    )
    print(f"dvc metrics show: {width} columns wide")
    # Plots render offline (vl-convert), per revision for comparisons.
    out = sh([sys.executable, "-m", "bertpipe.cli", "plots", "--out", "dvcplots"], project).stdout
    assert "pretraining_loss.png" in out and (project / "dvcplots/index.html").exists()
    assert (project / "dvcplots/pretraining_loss.png").read_bytes()[:4] == b"\x89PNG"
    # MLflow: one pipeline run with the report, a nested run per task, init and seed.
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bertpipe")
    parent = client.get_run(run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["bertpipe.stage"] == "pipeline"
    assert "report" in {a.path for a in client.list_artifacts(run_id)}
    assert parent.data.metrics["glue_average/pretrained"] == summary["glue_average"]["pretrained"]
    nested = client.search_runs(
        [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'", max_results=200
    )
    stages = [r.data.tags["bertpipe.stage"] for r in nested]
    assert stages.count("finetune") == len(RAN) * len(INITS) * 2 and stages.count(
        "pretrain"
    ) == len(FAMILIES)
    assert all(r.data.metrics for r in nested)
    # Registered models, each with the champion alias on its first version.
    families = ["bertpipe-pretrained", *(f"bertpipe-pretrained-{f}" for f in TUNED[1:])]
    for name in [*families, *(f"bertpipe-{t}" for t in RAN)]:
        assert int(client.get_model_version_by_alias(name, "champion").version) == 1


@pytest.mark.minutes
def test_a_prefect_server_killed_mid_run_does_not_fail_the_finished_work(project, tmp_path):
    """The flow's Prefect server dies while fine-tuning runs: the flow finishes the DAG with
    DVC, registers the models, writes its result with what Prefect could not record, exits 0."""
    port = _free_port()
    env = _env(
        {
            **_flow_env(tmp_path),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_CLIENT_MAX_RETRIES": "1",  # Prefect's own retries, shortened for the test
        }
    )
    log = open(tmp_path / "prefect.log", "w")  # noqa: SIM115 - closed in the finally below
    server = _serve(
        ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
        f"http://127.0.0.1:{port}/api/health",
        log,
    )
    result = tmp_path / "result.json"
    try:
        flow = subprocess.Popen(
            [
                *(sys.executable, "-m", "flows.pipeline", "--preset", "tiny"),
                *("--set", "finetune.tasks=[wnli,rte]", "--set", "finetune.seeds=[4]"),
                *("--max-parallel", "1", "--result", str(result)),
            ],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # Killed once the first fine-tuning stage has started training its seed.
        deadline = time.monotonic() + 300
        started = lambda: any((project / "checkpoints/finetune").glob("*/*/seed4"))
        while not started() and flow.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert flow.poll() is None, "the flow ended before the server could be killed"
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        out, _ = flow.communicate(timeout=600)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
    assert flow.returncode == 0, out[-4000:]
    assert "stopped answering" in out and "finishing the pipeline with DVC directly" in out
    r = json.loads(result.read_text())
    lost = r["orchestrator_lost"]
    assert lost["api"] == env["PREFECT_API_URL"] and "ConnectError" in lost["error"]
    assert {s["stage"] for s in r["stages"] if s["ran"]} >= {
        "finetune@wnli",
        "finetune@rte",
        "evaluate",
    }
    assert "up to date" in sh([sys.executable, "-m", "dvc", "status"], project).stdout
    assert any(p["model"] == "bertpipe-rte" for p in r["promoted"])
