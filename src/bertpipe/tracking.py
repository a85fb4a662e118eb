"""MLflow: the only importer of mlflow outside ``flows/``.

Owns where runs go (``MLFLOW_TRACKING_URI``, default ``sqlite:///mlflow.db`` in the
working directory, since MLflow 3's file store is deprecated), the Lightning
logger, run tags (git commit, DVC output hashes) and artifact logging.
"""

from __future__ import annotations

import hashlib
import os
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


def dvc_hashes(lock: str | Path = "dvc.lock") -> dict[str, str]:
    """The md5 of every DVC-tracked stage output, as MLflow tags ``dvc.<path>``."""
    path = Path(lock)
    if not path.exists():
        return {}
    stages = (yaml.safe_load(path.read_text()) or {}).get("stages", {})
    tags = {}
    for stage in stages.values():
        for out in stage.get("outs", []):
            if "md5" in out:
                tags[f"dvc.{out['path']}"] = out["md5"]
    return tags


def run_tags(stage: str) -> dict[str, str]:
    """Stage, DVC output hashes, git commit; under an orchestrated pipeline run, its parent."""
    tags = {"bertpipe.stage": stage, **dvc_hashes()}
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


def _client():
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow.MlflowClient()


def _experiment_id(client, experiment: str) -> str:
    exp = client.get_experiment_by_name(experiment)
    return exp.experiment_id if exp else client.create_experiment(experiment)


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
    return _new_pipeline_run(client, experiment, {"bertpipe.pipeline_key": key})


def _new_pipeline_run(client, experiment: str, tags: dict[str, str]) -> str:
    run = client.create_run(
        _experiment_id(client, experiment),
        run_name="pipeline",
        tags={**run_tags("pipeline"), **tags},
    )
    return run.info.run_id


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


def start_pipeline_run(experiment: str, params: dict | None = None) -> str:
    """A new parent run for one orchestrated pipeline run (the flow passes its id to the
    stages as ``BERTPIPE_PIPELINE_RUN_ID``)."""
    client = _client()
    run_id = _new_pipeline_run(client, experiment, {"bertpipe.orchestrator": "prefect"})
    for k, v in (params or {}).items():
        client.log_param(run_id, k, v)
    return run_id


def run_url(run_id: str) -> str:
    """A link to the run in the MLflow UI (the tracking server, or ``mlflow ui``'s default address)."""
    client = _client()
    exp_id = client.get_run(run_id).info.experiment_id
    base = tracking_uri() if tracking_uri().startswith("http") else "http://127.0.0.1:5000"
    return f"{base.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}"


def register_and_promote(
    run_id: str,
    model_dir: str | Path,
    name: str,
    metric: str,
    value: float,
    alias: str = "champion",
) -> dict:
    """Register ``model_dir`` (logged to ``run_id``) as a new version of ``name``; move ``alias``
    to it only if ``value`` beats the current holder's ``metric`` (higher is better).

    Returns ``{"version", "promoted", "previous"}``.
    """
    from mlflow.exceptions import MlflowException

    client = _client()
    artifact_path = f"registered/{name}"
    client.log_artifacts(run_id, str(model_dir), artifact_path)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    version = client.create_model_version(
        name,
        f"runs:/{run_id}/{artifact_path}",
        run_id=run_id,
        tags={metric: str(value), **dvc_hashes()},
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
