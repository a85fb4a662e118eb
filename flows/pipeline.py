"""Prefect flow ``pipeline``: the DVC DAG as Prefect tasks, then model promotion.

Parameters: a preset and ``section.key=value`` overrides (written to params.yaml
first, as ``bertpipe preset`` does). The stages and their order come from DVC's
own graph (``flows/dag.py``): one task per stage, generation by generation, the
stages of one generation (the ``finetune@TASK`` fan-out) concurrently, at most
``max_parallel`` at a time; unchanged stages are skipped by DVC and reported as
such. With a DVC remote configured the flow pulls before and pushes after. The
MLflow parent run is created here and passed to the stages
(``BERTPIPE_PIPELINE_RUN_ID``), so fine-tuning and evaluation nest under it. After
evaluation the trained models are registered (``bertpipe.evaluation.promotion``
says which and by which score); ``champion`` moves only to a better one.

If the Prefect API stops answering once the flow has started (the server killed or
restarted), Prefect raises when it next records a state. The DVC outputs are the
truth, so ``main`` then finishes the work without Prefect (``finish_without_prefect``:
``dvc repro`` of whatever is left, promotion, push), writes the result with an
``orchestrator_lost`` entry saying what Prefect could not record, and exits 0.

    python -m flows.pipeline --preset tiny
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.futures import PrefectFuture, as_completed

from flows.dag import default_parallelism, stage_generations
from flows.results import results_markdown
from flows.stage_tasks import (
    changed_stages,
    dvc_sync,
    run_stage,
    run_stage_concurrently,
    write_params,
)


# log_prints off: dill (under datasets' fingerprinting) reads globals by capturing what
# dis.dis prints, and Prefect's print capture would turn that into bytecode in the task log.
@task(task_run_name="register models", log_prints=False)
def promote(workdir: str, run_id: str) -> list[dict]:
    """Register every candidate model; ``champion`` moves only on a win."""
    from bertpipe import tracking
    from bertpipe.evaluation.promotion import candidates
    from bertpipe.inference.pyfunc_model import log_model

    promoted = []
    for c in candidates(workdir):
        uri = log_model(run_id, c.model_dir, c.name)  # an MLflow Model: pyfunc, signature
        result = tracking.register_and_promote(run_id, uri, c.model_dir, c.name, c.metric, c.value)
        promoted.append({"model": c.name, **result})
    return promoted


PROGRESS: dict = {}
"""What the flow running in this process has done so far (its MLflow run, the stages
finished), for ``main`` to carry on from if the Prefect API goes away."""


def run_dag(workdir: str, env: dict, max_parallel: int, results: list[dict]) -> list[dict]:
    """Every stage of ``dvc.yaml`` in DAG order, ``{"stage", "ran"}`` each appended to
    ``results`` as it finishes."""
    generations = stage_generations(workdir)
    if not changed_stages(workdir):
        # Nothing changed anywhere: one `dvc status` instead of a `dvc repro` per stage.
        results += [{"stage": s, "ran": False} for gen in generations for s in gen]
        return results
    for gen in generations:
        if len(gen) == 1:
            results.append(run_stage(gen[0], workdir, env, return_state=True).result())
            continue
        # A bounded window: a new stage starts when one of the running ones finishes. After a
        # failure no new stage starts, the running ones finish, then the failure is raised.
        done: dict[str, dict] = {}
        first = len(results)
        running: list[PrefectFuture] = []
        todo = list(gen)
        failure: Exception | None = None
        while todo or running:
            while todo and failure is None and len(running) < max_parallel:
                running.append(run_stage_concurrently.submit(todo.pop(0), workdir, env))
            if not running:
                break
            finished = next(as_completed(running))
            running.remove(finished)
            try:
                result = finished.result()
            except Exception as e:
                failure = failure or e
                continue
            done[result["stage"]] = result
            results.append(result)
        if failure is not None:
            raise failure
        results[first:] = [done[s] for s in gen]  # in dvc.yaml's order, not finishing order
    return results


@flow(name="pipeline", log_prints=True)
def pipeline(
    preset: str | None = None,
    overrides: list[str] | None = None,
    workdir: str = ".",
    max_parallel: int | None = None,
) -> dict:
    from bertpipe import tracking
    from bertpipe.config import load_params
    from bertpipe.data.catalog import use_discovered_mirror
    from bertpipe.dvc_runner import LockGuard

    workdir = str(Path(workdir).resolve())
    use_discovered_mirror(workdir)  # what `make` finds, for a flow started without it
    params_path = write_params(preset, list(overrides or []), workdir)
    params = load_params(params_path)
    tracking.require_reachable()
    pulled = dvc_sync("pull", workdir)
    closed = tracking.close_stale_pipeline_runs(params.tracking.experiment)
    if closed:
        print(f"ended {len(closed)} MLflow pipeline run(s) a killed flow left RUNNING: {closed}")
    run_id = tracking.start_pipeline_run(
        params.tracking.experiment,
        {"preset": params.preset, "overrides": ",".join(overrides or [])},
        links=prefect_links(),
    )
    print(f"MLflow run: {tracking.run_url(run_id)}")
    # The way back from the flow run's page (Artifacts), there from the start: a flow that
    # fails or is killed still links its MLflow run, which links back (prefect.* tags).
    create_link_artifact(
        tracking.run_url(run_id),
        link_text=f"MLflow run {run_id}",
        key="mlflow-run",
        description="this flow run's MLflow parent run",
    )
    results: list[dict] = []
    PROGRESS.update(workdir=workdir, run_id=run_id, results=results, pulled=pulled)
    status = "FAILED"
    try:
        with LockGuard(workdir, log=print):
            run_dag(
                workdir,
                {"BERTPIPE_PIPELINE_RUN_ID": run_id},
                max_parallel or default_parallelism(),
                results,
            )
        for r in results:
            if r["ran"]:
                tracking.tag_stage_runs(run_id, r["stage"], Path(workdir) / "dvc.lock")
        # Unchanged outputs are the models registered last time: no new versions for them.
        promoted = promote(workdir, run_id) if any(r["ran"] for r in results) else []
        pushed = dvc_sync("push", workdir)
        status = "FINISHED"
    except BaseException as e:
        status = "KILLED" if isinstance(e, KeyboardInterrupt | SystemExit) else "FAILED"
        raise
    finally:
        tracking.end_run(run_id, status)

    report = json.loads((Path(workdir) / "reports/summary.json").read_text())
    create_markdown_artifact(
        results_markdown(results, report, promoted, tracking.run_url(run_id), run_id),
        key="bertpipe-results",
        description="pipeline results",
    )
    return {
        "stages": results,
        "mlflow_run_id": run_id,
        "promoted": promoted,
        "pulled": pulled,
        "pushed": pushed,
    }


def prefect_links() -> dict[str, str]:
    """Tags linking the MLflow pipeline run to this Prefect flow run (id and UI address)."""
    from prefect.runtime import flow_run

    links = {"prefect.flow_run_id": str(flow_run.id or "")}
    url = flow_run.ui_url
    if url:
        links["prefect.flow_run_url"] = url
    return {k: v for k, v in links.items() if v}


def orchestrator_lost(error: BaseException) -> bool:
    """Whether ``error`` is the Prefect API not answering (not a failure of the work)."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    if isinstance(error, PrefectHTTPStatusError):
        return error.response.status_code >= 500
    return isinstance(error, httpx.TransportError)


def finish_without_prefect(error: BaseException) -> dict:
    """The rest of a started flow's work with DVC and MLflow only; what Prefect lacks, said."""
    from prefect.settings import PREFECT_API_URL

    from bertpipe import tracking
    from bertpipe.dvc_runner import run as run_dvc

    workdir, run_id = PROGRESS["workdir"], PROGRESS["run_id"]
    url = PREFECT_API_URL.value() or "the temporary Prefect server"
    print(
        f"bertpipe flow: the Prefect API at {url} stopped answering "
        f"({type(error).__name__}: {error}); finishing the pipeline with DVC directly. "
        "Prefect will show this flow run as still running."
    )
    proc = run_dvc(
        ["repro"], cwd=workdir, env={"BERTPIPE_PIPELINE_RUN_ID": run_id}, capture_output=True
    )
    text = proc.stdout.decode() + proc.stderr.decode()
    print(text)
    if proc.returncode:
        raise RuntimeError(f"dvc repro failed after the Prefect API was lost:\n{text[-3000:]}")
    ran = set(re.findall(r"Running stage '([^']+)'", text))
    ran |= {r["stage"] for r in PROGRESS["results"] if r["ran"]}
    stages = [{"stage": s, "ran": s in ran} for gen in stage_generations(workdir) for s in gen]
    promoted = promote.fn(workdir, run_id) if ran else []
    pushed = dvc_sync.fn("push", workdir)
    recorded = [r["stage"] for r in PROGRESS["results"]]
    tracking.end_run(run_id, "FINISHED")  # the flow's own ending marked it FAILED
    return {
        "stages": stages,
        "mlflow_run_id": run_id,
        "mlflow_url": tracking.run_url(run_id),
        "promoted": promoted,
        "pulled": PROGRESS["pulled"],
        "pushed": pushed,
        "orchestrator_lost": {
            "api": url,
            "error": f"{type(error).__name__}: {error}",
            "stages_recorded_in_prefect": recorded,
            "not_recorded": [
                "the states of the other stages' tasks, promotion and push",
                "the flow run's final state (Prefect shows it running)",
                "the results artifact (this file holds the results)",
            ],
        },
    }


def main() -> None:
    from bertpipe.config import PRESETS

    p = argparse.ArgumentParser(description="Run the bertpipe DAG as a Prefect flow.")
    p.add_argument("--preset", choices=PRESETS)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workdir", default=os.getcwd())
    p.add_argument(
        "--max-parallel",
        type=int,
        help="stages of one generation run at once (default: cores / OMP_NUM_THREADS)",
    )
    p.add_argument(
        "--result",
        help="also write the flow's result (stages run/skipped, MLflow run, "
        "registered models) to this JSON file",
    )
    a = p.parse_args()
    try:
        out = pipeline(a.preset, a.set, a.workdir, a.max_parallel)
    except Exception as e:
        if not (orchestrator_lost(e) and PROGRESS):
            raise
        out = finish_without_prefect(e)
    if a.result:
        Path(a.result).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
