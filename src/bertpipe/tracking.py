"""MLflow: the only importer of mlflow outside ``flows/`` (and ``inference/pyfunc_model.py``,
the pyfunc class MLflow loads).

Owns where runs go (``MLFLOW_TRACKING_URI``, default ``sqlite:///mlflow.db`` in the
working directory, since MLflow 3's file store is deprecated), the Lightning
logger, run tags (git commit, DVC output hashes) and artifact logging.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml

from bertpipe.errors import UserError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def lock_stages(lock: str | Path = "dvc.lock") -> dict[str, dict]:
    """``dvc.lock``'s stage entries (empty when there is no lock yet)."""
    path = Path(lock)
    if not path.exists():
        return {}
    return (yaml.safe_load(path.read_text()) or {}).get("stages") or {}


def stage_lock_hashes(stage: str, lock: str | Path = "dvc.lock") -> dict[str, str]:
    """The md5 of ``stage``'s own data/model deps and its outs as ``dvc.lock`` records them (after
    it ran), as tags ``dvc.dep.<path>`` / ``dvc.out.<path>``; params are the run's params and
    code is the git commit, not tags here."""
    entry = lock_stages(lock).get(stage) or {}
    tags = {}
    for role in ("deps", "outs"):
        for item in entry.get(role, []):
            # the code deps are the git commit's (tagged too): only data and models here
            if "md5" in item and not item["path"].startswith("src/"):
                tags[f"dvc.{role[:-1]}.{item['path']}"] = item["md5"]
    return tags


def lock_out_md5(path: str, lock: str | Path = "dvc.lock") -> str | None:
    """The md5 ``dvc.lock`` records for the output ``path`` (a finished upstream stage's)."""
    for entry in lock_stages(lock).values():
        for out in entry.get("outs", []):
            if out["path"].rstrip("/") == path.rstrip("/") and "md5" in out:
                return out["md5"]
    return None


def stage_of(path: str | Path) -> tuple[str, Path] | None:
    """The stage whose outs hold ``path`` (or a folder above it), and its ``dvc.lock``: the one
    of the nearest folder above ``path`` that has one."""
    target = Path(path).resolve()
    lock = next((d / "dvc.lock" for d in target.parents if (d / "dvc.lock").exists()), None)
    if lock is None:
        return None
    relative = target.relative_to(lock.parent).as_posix()
    for name, entry in lock_stages(lock).items():
        for out in entry.get("outs", []):
            if relative == out["path"] or relative.startswith(out["path"].rstrip("/") + "/"):
                return name, lock
    return None


@contextlib.contextmanager
def system_metrics(logger, interval: float = 1.0):
    """CPU, memory (and GPU, where there is one) sampled into the run as ``system/*`` metrics
    while the block runs (MLflow's system metrics monitor)."""
    if logger is None or not getattr(logger, "run_id", None):
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(
        logger.run_id, sampling_interval=interval, resume_logging=True, tracking_uri=tracking_uri()
    )
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def log_inputs(run_id: str, inputs: list[dict]) -> None:
    """Dataset lineage (the runs table's Dataset column): each ``{name, source, digest, rows,
    context}`` as an MLflow dataset input with its row count as profile."""
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.exceptions import MlflowException

    datasets = [
        DatasetInput(
            Dataset(
                name=i["name"],
                digest=str(i["digest"])[:36],
                source_type="local",
                source=json.dumps({"uri": str(i["source"])}),
                profile=json.dumps({"num_rows": i["rows"]}),
            ),
            [InputTag("mlflow.data.context", i["context"])],
        )
        for i in inputs
    ]
    client = _client()
    for attempt in range(_INPUT_ATTEMPTS):
        try:
            client.log_inputs(run_id, datasets)
            return
        except MlflowException as e:
            # MLflow's stores look a dataset up, then insert it: two fan-out stages logging the
            # same dataset at once both insert, and the later one hits the unique key. Again,
            # the lookup finds the row the other stage wrote.
            if attempt + 1 == _INPUT_ATTEMPTS or not _DUPLICATE_KEY.search(str(e)):
                raise


_INPUT_ATTEMPTS = 3
_DUPLICATE_KEY = re.compile(r"UNIQUE constraint|IntegrityError|duplicate key|Duplicate entry")


def run_tags(stage: str) -> dict[str, str]:
    """Stage and git commit; under an orchestrated pipeline run, its parent. (The stage's DVC
    hashes are tagged after it ran, by ``tag_stage_runs``: before, dvc.lock holds the last
    run's.)"""
    tags = {"bertpipe.stage": stage}
    parent = os.environ.get("BERTPIPE_PIPELINE_RUN_ID")
    if parent and stage != "pipeline":
        tags["mlflow.parentRunId"] = parent
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def make_logger(
    experiment: str,
    run_name: str,
    run_id: str | None = None,
    tags: dict | None = None,
    run_id_origin: str | None = None,
):
    """A Lightning MLFlowLogger; with ``run_id`` it continues that run instead of starting one.

    A continued run (a resumed pretraining) keeps the params it has, logs only new ones and
    records changed values (a changed logging cadence) as ``changed_param.<key>`` tags, since
    MLflow refuses to change a logged param; and no run logs a metric again at a step its
    history already has (the steps between the last checkpoint and a kill are trained
    again, to the same values, after a resume). A ``run_id`` the tracking store does not
    know (``MLFLOW_TRACKING_URI`` changed since) is reported, naming ``run_id_origin``, and a
    new run starts.
    """
    from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
    from lightning.pytorch.loggers import MLFlowLogger
    from lightning.pytorch.utilities import rank_zero_only

    class ContinuedRunLogger(MLFlowLogger):
        _logged_steps: set[tuple[str, int]] | None = None

        @rank_zero_only  # other DDP ranks hold a dummy experiment, like MLFlowLogger's own
        def log_hyperparams(self, params) -> None:
            flat = _flatten_dict(_convert_params(params))
            logged = self.experiment.get_run(self.run_id).data.params
            for key, value in flat.items():
                if (
                    key in logged and str(value)[:250] != logged[key]
                ):  # MLFlowLogger stores 250 chars
                    self.experiment.set_tag(self.run_id, f"changed_param.{key}", str(value)[:5000])
            new = {k: v for k, v in flat.items() if k not in logged}
            if new:
                super().log_hyperparams(new)

        @rank_zero_only
        def log_metrics(self, metrics, step=None) -> None:
            if self._logged_steps is None:
                client = self.experiment
                keys = client.get_run(self.run_id).data.metrics
                self._logged_steps = {
                    (k, m.step) for k in keys for m in client.get_metric_history(self.run_id, k)
                }
            at = step or 0  # MLflow's step when none is given
            fresh = {k: v for k, v in metrics.items() if (k, at) not in self._logged_steps}
            if fresh:
                super().log_metrics(fresh, step)
                self._logged_steps.update((k, at) for k in fresh)

    if run_id is not None and not _run_exists(run_id):
        import logging

        logging.getLogger(__name__).warning(
            "MLflow run %s%s is not in the tracking store at %s (MLFLOW_TRACKING_URI changed?); "
            "starting a new run",
            run_id,
            f" (recorded in {run_id_origin})" if run_id_origin else "",
            tracking_uri(),
        )
        run_id = None
    # Always the deduplicating logger: a continued run has steps logged before the kill, and
    # the final ``trainer.validate`` scores the weights an in-training validation at the
    # last step already logged.
    return ContinuedRunLogger(
        experiment_name=experiment,
        run_name=run_name,
        tracking_uri=tracking_uri(),
        run_id=run_id,
        tags=tags,
        log_model=False,
    )


def _run_exists(run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        _client().get_run(run_id)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


class TrackingUnreachableError(UserError, ConnectionError):
    """The MLflow tracking server cannot be reached; a transient failure the flow retries."""


def require_reachable(timeout: float = 3.0) -> None:
    """Fail within ``timeout`` seconds, naming the URI and what to do, when an http(s)
    tracking server does not answer (a file or sqlite store is always there)."""
    uri = tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered (behind auth, or an older server without /health)
    except (OSError, ValueError) as e:
        raise TrackingUnreachableError(
            f"the MLflow tracking server at {uri} (MLFLOW_TRACKING_URI) is unreachable ({e}); "
            "start it, point MLFLOW_TRACKING_URI at a running one, or unset it to record to "
            "sqlite:///mlflow.db here"
        ) from None


def set_tag(logger, key: str, value: str) -> None:
    logger.experiment.set_tag(logger.run_id, key, value)


def log_text(logger, text: str, artifact_file: str) -> None:
    logger.experiment.log_text(logger.run_id, text, artifact_file)


def log_dict(logger, data: dict, artifact_file: str) -> None:
    logger.experiment.log_dict(logger.run_id, data, artifact_file)


def log_dir(logger, local_dir: str | Path, artifact_path: str) -> None:
    logger.experiment.log_artifacts(logger.run_id, str(local_dir), artifact_path)


def log_metrics(logger, metrics: dict[str, float], step: int | None = None) -> None:
    """Through the logger, so a (key, step) the run's history has is not logged again (a rerun
    killed after the final metrics were logged, resumed from the last checkpoint)."""
    values = {k: float(v) for k, v in metrics.items() if v is not None}
    if values:
        logger.log_metrics(values, step)


def set_terminated(logger, status: str = "FINISHED") -> None:
    logger.experiment.set_terminated(logger.run_id, status)


def end_abandoned(run_id: str, reason: str) -> None:
    """Mark a run a killed process left RUNNING as KILLED, with why (``bertpipe.abandoned``).

    A rerun that cannot continue it (no checkpoint to resume from) starts a new run; the
    old one would otherwise stay RUNNING in the UI forever, its partial history looking
    like a live run's.
    """
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return
        raise
    if run.info.status == "RUNNING":
        client.set_tag(run_id, "bertpipe.abandoned", reason)
        client.set_terminated(run_id, "KILLED")


def download(uri: str, cache: str | Path | None = None) -> Path:
    """A ``models:/``, ``runs:/`` or artifact URI's files, downloaded (to ``cache`` or a
    temporary folder); an unknown model or alias is an error naming it."""
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri())
    dst = Path(cache) if cache else Path(tempfile.mkdtemp(prefix="bertpipe-model-"))
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except MlflowException as e:
        raise UserError(
            f"{uri}: not found in the MLflow tracking store at {tracking_uri()} ({e.message}); "
            "list registered models with `mlflow models` or the UI, or set MLFLOW_TRACKING_URI"
        ) from None


def _client():
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow.MlflowClient()


def _experiment_id(client, experiment: str) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        try:
            client.create_experiment(experiment)
        except MlflowException as e:
            # another stage created it since the lookup: use that one
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        exp = client.get_experiment_by_name(experiment)
    if exp.tags.get(EXPERIMENT_KIND_TAG) != "custom_model_development":
        # MLflow 3's UI opens an experiment in its machine-learning view by this tag (not the
        # GenAI "Traces" view)
        client.set_experiment_tag(
            exp.experiment_id, EXPERIMENT_KIND_TAG, "custom_model_development"
        )
    return exp.experiment_id


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"


def tag_stage_runs(parent_run_id: str, stage: str, lock: str | Path = "dvc.lock") -> int:
    """Tag the runs a finished stage made under ``parent_run_id`` with its ``dvc.lock`` hashes;
    the number of runs tagged."""
    client = _client()
    parent = client.get_run(parent_run_id)
    base = stage.split("@", 1)[0]
    query = f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.`bertpipe.stage` = '{base}'"
    if "@" in stage:
        item = stage.split("@", 1)[1]
        key = "bertpipe.task" if base == "finetune" else "bertpipe.family"
        query += f" and tags.`{key}` = '{item}'"
    tags = stage_lock_hashes(stage, lock)
    runs = client.search_runs([parent.info.experiment_id], query, max_results=500)
    for run in runs:
        for k, v in tags.items():
            client.set_tag(run.info.run_id, k, v)
    return len(runs)


def pipeline_run(experiment: str, pretrained_dir: str | Path | None) -> str:
    """The parent run of this pipeline run: fine-tuning and evaluation runs nest under it.

    ``BERTPIPE_PIPELINE_RUN_ID`` (set by the Prefect flow) names it; otherwise the run
    is found or created by a key: the pretrained model's weights and the params file,
    so every stage process of one ``dvc repro`` finds the same parent (the weights of every
    family under ``pretrained_dir``, by their recorded sha256).
    """
    run_id = os.environ.get("BERTPIPE_PIPELINE_RUN_ID")
    if run_id:
        return run_id
    client = _client()
    h = hashlib.sha256()
    folder = Path(pretrained_dir or "")
    weights = sorted(folder.glob("*/model.sha256")) if pretrained_dir else []
    h.update(b"".join(w.read_bytes() for w in weights) or b"none")
    h.update(Path("params.yaml").read_bytes() if Path("params.yaml").exists() else b"")
    key = h.hexdigest()[:16]
    exp_id = _experiment_id(client, experiment)
    found = client.search_runs([exp_id], f"tags.`bertpipe.pipeline_key` = '{key}'", max_results=1)
    if found:
        return found[0].info.run_id
    run_id = _new_pipeline_run(client, experiment, {"bertpipe.pipeline_key": key})
    # No process of a plain `dvc repro` knows when the repro ends (a targeted one may never
    # reach evaluate): this parent only groups the stage runs, each with its own status, so it
    # is ended at once rather than left RUNNING.
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _new_pipeline_run(client, experiment: str, tags: dict[str, str], preset: str = "") -> str:
    import socket
    import time

    commit = (git_commit() or "nocommit")[:8]
    name = " ".join(x for x in ("pipeline", preset, commit, time.strftime("%Y-%m-%d %H:%M")) if x)
    run = client.create_run(
        _experiment_id(client, experiment),
        run_name=name,
        tags={
            **run_tags("pipeline"),
            "bertpipe.host": socket.gethostname(),
            "bertpipe.pid": str(os.getpid()),
            **tags,
        },
    )
    return run.info.run_id


def close_stale_pipeline_runs(experiment: str, keep: str | None = None) -> list[str]:
    """End as KILLED the pipeline runs still RUNNING whose process (this host) is gone: a flow
    killed or interrupted before it could end its run. Returns their ids."""
    import socket

    client = _client()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    # only the flow's own runs: a plain `dvc repro`'s parent is found again by its key and
    # ended by the evaluate stage
    query = (
        "tags.`bertpipe.stage` = 'pipeline' and tags.`bertpipe.orchestrator` = 'prefect' "
        "and attributes.status = 'RUNNING'"
    )
    closed = []
    for run in client.search_runs([exp.experiment_id], query, max_results=200):
        tags = run.data.tags
        if run.info.run_id == keep or tags.get("bertpipe.host") != socket.gethostname():
            continue
        pid = int(tags.get("bertpipe.pid", "0") or 0)
        if pid and _alive(pid):
            continue
        client.set_tag(
            run.info.run_id, "bertpipe.abandoned", "its flow process ended without ending it"
        )
        client.set_terminated(run.info.run_id, "KILLED")
        closed.append(run.info.run_id)
    return closed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_run(run_id: str, status: str = "FINISHED") -> None:
    """End ``run_id`` as ``status`` (FINISHED, FAILED, KILLED)."""
    _client().set_terminated(run_id, status)


def log_to_run(
    run_id: str,
    *,
    metrics: dict[str, float] | None = None,
    artifacts: Mapping[str, str | Path] | None = None,
    tags: dict[str, str] | None = None,
    finish: bool = False,
) -> None:
    """Metrics, files/folders (artifact path -> local path) and tags on an existing run; ``finish`` ends it."""
    client = _client()
    for k, v in (metrics or {}).items():
        client.log_metric(run_id, k, float(v))
    for artifact_path, where in (artifacts or {}).items():
        local = Path(where)
        if local.is_dir():
            client.log_artifacts(run_id, str(local), artifact_path)
        elif local.exists():
            client.log_artifact(run_id, str(local), artifact_path or None)
    for k, tag in (tags or {}).items():
        client.set_tag(run_id, k, tag)
    if finish:
        client.set_terminated(run_id, "FINISHED")


def start_pipeline_run(
    experiment: str, params: dict | None = None, links: dict[str, str] | None = None
) -> str:
    """A new parent run for one orchestrated pipeline run (the flow passes its id to the
    stages as ``BERTPIPE_PIPELINE_RUN_ID``)."""
    client = _client()
    tags = {"bertpipe.orchestrator": "prefect", **(links or {})}
    preset = str((params or {}).get("preset", ""))
    run_id = _new_pipeline_run(client, experiment, tags, preset)
    for k, v in (params or {}).items():
        client.log_param(run_id, k, v)
    return run_id


def run_url(run_id: str) -> str:
    """A link to the run in the MLflow UI (the tracking server, or ``mlflow ui``'s default address)."""
    client = _client()
    exp_id = client.get_run(run_id).info.experiment_id
    base = tracking_uri() if tracking_uri().startswith("http") else "http://127.0.0.1:5000"
    # workflowType: the machine-learning view of the run, not MLflow 3's GenAI "Evaluation"
    return f"{base.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}?workflowType=machine_learning"


def pip_requirements() -> list[str]:
    """What the logged pyfunc needs, pinned to this environment (bertpipe itself travels as
    the model's code)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in (
        "torch",
        "tokenizers",
        "safetensors",
        "datasets",
        "torchmetrics",
        "seqeval",
        "pandas",
        "numpy",
        "pydantic",
        "pyyaml",
        "lightning",
        "mlflow",
    ):
        try:
            out.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            continue
    return out


def register_and_promote(
    run_id: str,
    model_uri: str,
    model_dir: str | Path,
    name: str,
    metric: str,
    value: float,
    alias: str = "champion",
) -> dict:
    """Register ``model_uri`` (``model_dir`` logged to ``run_id`` as an MLflow Model,
    ``inference.pyfunc_model.log_model``) as a new version of ``name``; move ``alias``
    to it only if ``value`` beats the current holder's ``metric`` (higher is better).

    Returns ``{"version", "promoted", "previous"}``.
    """
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    found = stage_of(model_dir)
    commit = git_commit()
    # A logged model's URI is models:/<model id>; a tracking server (not the sqlite store)
    # refuses that source unless the id comes with it, as mlflow.register_model sends it.
    logged = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    version = client.create_model_version(
        name,
        model_uri,
        run_id=run_id,
        model_id=logged,
        tags={
            metric: str(value),
            **(stage_lock_hashes(*found) if found else {}),
            **({"git_commit": commit} if commit else {}),
        },
    )
    try:
        current = client.get_model_version_by_alias(name, alias)
        previous = float(current.tags.get(metric, "-inf"))
    except MlflowException:
        current, previous = None, None
    promoted = previous is None or value > previous
    if promoted:
        client.set_registered_model_alias(name, alias, version.version)
    return {
        "version": int(version.version),
        "promoted": promoted,
        "previous": previous,
        "value": value,
    }
