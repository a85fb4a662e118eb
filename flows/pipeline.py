"""Prefect flow ``pipeline``: the DVC DAG as Prefect tasks, then model promotion.

Parameters: a preset and ``section.key=value`` overrides (written to params.yaml
first, as ``bertpipe preset`` does). Stages run in DAG order, one task per DVC
stage; the ``finetune@TASK`` stages fan out concurrently; unchanged stages are
skipped by DVC and reported as such. With a DVC remote configured the flow pulls
before and pushes after. The MLflow parent run is created here and passed to the
stages (``BERTPIPE_PIPELINE_RUN_ID``), so fine-tuning and evaluation nest under it.
After evaluation the pretrained model and each fine-tuned model are registered;
the ``champion`` alias moves only to a model that beats the current one.

    python -m flows.pipeline --preset tiny
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.futures import wait

from flows.tasks import changed_stages, dvc_sync, run_stage, run_stage_concurrently, write_params

SEQUENTIAL = ("corpus", "tokenizer", "pretrain_data", "pretrain")


@task
def promote(workdir: str, run_id: str) -> list[dict]:
    """Register the pretrained model (metric: GLUE average of the 'pretrained' init) and every
    fine-tuned model (metric: its task's median dev score); ``champion`` moves only on a win."""
    from bertpipe import tracking

    root = Path(workdir)
    report = json.loads((root / "reports/metrics.json").read_text())
    done = []
    glue = report.get("glue_average", {}).get("pretrained")
    if glue is not None and (root / "models/pretrained").is_dir():
        done.append({"model": "bertpipe-pretrained", **tracking.register_and_promote(
            run_id, root / "models/pretrained", "bertpipe-pretrained", "glue_average", glue)})
    for task_name, scores in report.get("tasks", {}).items():
        model_dir = root / "results/finetune" / task_name / "model"
        if "pretrained" in scores and model_dir.is_dir():
            name = f"bertpipe-{task_name}"
            done.append({"model": name, **tracking.register_and_promote(
                run_id, model_dir, name, "dev_score", scores["pretrained"])})
    return done


@flow(name="pipeline", log_prints=True)
def pipeline(preset: str | None = None, overrides: list[str] | None = None, workdir: str = ".") -> dict:
    from bertpipe import tracking
    from bertpipe.config import load_params

    workdir = str(Path(workdir).resolve())
    params_path = write_params(preset, list(overrides or []), workdir)
    params = load_params(params_path)
    pulled = dvc_sync("pull", workdir)
    run_id = tracking.start_pipeline_run(params.tracking.experiment,
                                         {"preset": params.preset, "overrides": ",".join(overrides or [])})
    env = {"BERTPIPE_PIPELINE_RUN_ID": run_id}
    stages = [*SEQUENTIAL, *(f"finetune@{t}" for t in params.finetune.tasks), "evaluate"]
    if not changed_stages(workdir):
        # Nothing changed anywhere: one `dvc status` instead of a `dvc repro` per stage.
        results = [{"stage": s, "ran": False} for s in stages]
    else:
        results = [run_stage(stage, workdir, env) for stage in SEQUENTIAL]
        futures = [run_stage_concurrently.submit(f"finetune@{t}", workdir, env) for t in params.finetune.tasks]
        wait(futures)
        results += [f.result() for f in futures]
        results.append(run_stage("evaluate", workdir, env))
    # Unchanged outputs are the models registered last time: no new versions for them.
    promoted = promote(workdir, run_id) if any(r["ran"] for r in results) else []
    pushed = dvc_sync("push", workdir)

    report = json.loads((Path(workdir) / "reports/metrics.json").read_text())
    lines = ["| stage | ran |", "|---|---|"] + [f"| {r['stage']} | {'ran' if r['ran'] else 'skipped (unchanged)'} |"
                                                for r in results]
    lines += ["", "| task | " + " | ".join(params.finetune.inits) + " |", "|---|" + "---|" * len(params.finetune.inits)]
    for name, scores in report["tasks"].items():
        lines.append(f"| {name} | " + " | ".join(f"{scores.get(i, float('nan')):.1f}" for i in scores) + " |")
    lines += ["", f"GLUE average: {report['glue_average']}", f"Skipped: {sorted(report['skipped'])}",
              "", "| registered model | version | champion |", "|---|---|---|"]
    lines += [f"| {p['model']} | {p['version']} | {'yes' if p['promoted'] else 'no'} |" for p in promoted]
    url = tracking.run_url(run_id)
    lines += ["", f"MLflow run: [{run_id}]({url})"]
    create_markdown_artifact("\n".join(lines), key="bertpipe-results", description="pipeline results")
    return {"stages": results, "mlflow_run_id": run_id, "promoted": promoted, "pulled": pulled, "pushed": pushed}


def main() -> None:
    p = argparse.ArgumentParser(description="Run the bertpipe DAG as a Prefect flow.")
    p.add_argument("--preset", choices=["tiny", "demo", "base", "large"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workdir", default=os.getcwd())
    p.add_argument("--result", help="also write the flow's result (stages run/skipped, MLflow run, "
                                    "registered models) to this JSON file")
    a = p.parse_args()
    out = pipeline(a.preset, a.set, a.workdir)
    if a.result:
        Path(a.result).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
