"""Prefect flow ``sweep``: a grid of params overrides run as DVC experiments, the best reported.

Each grid point is queued with ``dvc exp run --queue -S key=value ...`` and the queue
is run with ``dvc exp run --run-all`` (DVC runs each in its own temporary copy, so
the workspace is untouched); ``dvc exp show --json`` gives every experiment's
metrics, and the best by ``metric`` (a dotted key inside a DVC metrics file) is
reported as a Prefect artifact. Apply it with ``dvc exp apply NAME``.

    python -m flows.sweep --grid finetune.hparams.learning_rate=1e-4,3e-4 \
        --metric reports/metrics.json:glue_average.pretrained
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
from pathlib import Path

import yaml
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.stage_tasks import dvc


@task(task_run_name="queue {name}")
def queue_experiment(name: str, overrides: list[str], workdir: str) -> str:
    dvc(
        "exp",
        "run",
        "--queue",
        "--name",
        name,
        *[a for o in overrides for a in ("-S", o)],
        cwd=workdir,
        stage=name,
    )
    return name


@task
def run_queue(workdir: str, jobs: int) -> None:
    dvc("exp", "run", "--run-all", "--jobs", str(jobs), cwd=workdir, stage="sweep queue")


def _lookup(data: dict, dotted: str):
    for part in dotted.split("."):
        data = data[part]
    return data


@task
def collect(workdir: str, names: list[str], metric: str) -> dict[str, float | None]:
    """``{experiment name: metric value}`` from ``dvc exp show --json``."""
    shown = json.loads(
        dvc("exp", "show", "--json", cwd=workdir, stage="exp show", stdout_only=True)
    )
    file, key = metric.split(":", 1)
    found: dict[str, float | None] = {}

    def walk(node):
        if isinstance(node, dict):
            if node.get("name") in names and isinstance(node.get("data"), dict):
                metrics = node["data"].get("metrics", {}).get(file, {}).get("data", {})
                try:
                    found[node["name"]] = float(_lookup(metrics, key))
                except (KeyError, TypeError, ValueError):
                    found.setdefault(node["name"], None)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(shown)
    return found


def grid_points(grid: dict[str, list]) -> list[list[str]]:
    keys = list(grid)
    return [
        [
            f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in zip(keys, combo)
        ]
        for combo in itertools.product(*(grid[k] for k in keys))
    ]


@flow(name="sweep", log_prints=True)
def sweep(
    grid: dict[str, list], metric: str, maximize: bool = True, jobs: int = 1, workdir: str = "."
) -> dict:
    workdir = str(Path(workdir).resolve())
    points = grid_points(grid)
    names = [
        queue_experiment(f"sweep-{hashlib.sha1(' '.join(p).encode()).hexdigest()[:8]}", p, workdir)
        for p in points
    ]
    run_queue(workdir, jobs)
    scores = collect(workdir, names, metric)
    found = {n: v for n, v in scores.items() if v is not None}
    ranked = sorted(found, key=lambda n: found[n], reverse=maximize)
    best = ranked[0] if ranked else None
    lines = ["| experiment | overrides | " + metric + " |", "|---|---|---|"]
    lines += [
        f"| {n}{' (best)' if n == best else ''} | {' '.join(p)} | {scores.get(n)} |"
        for n, p in zip(names, points)
    ]
    lines += [
        "",
        f"Apply the best with `dvc exp apply {best}`."
        if best
        else "No experiment produced the metric.",
    ]
    create_markdown_artifact("\n".join(lines), key="bertpipe-sweep", description="sweep results")
    overrides = dict(zip(names, points, strict=True)).get(best) if best else None
    return {"best": best, "overrides": overrides, "scores": scores}


def main() -> None:
    p = argparse.ArgumentParser(description="Run a params grid as DVC experiments.")
    p.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2",
        help="a params key and its values, comma-separated (repeat for more keys)",
    )
    p.add_argument(
        "--metric",
        required=True,
        help="METRICS_FILE:dotted.key, e.g. reports/metrics.json:glue_average.pretrained",
    )
    p.add_argument("--minimize", action="store_true")
    p.add_argument("--jobs", type=int, default=1)
    a = p.parse_args()
    grid = {
        k: [yaml.safe_load(v) for v in vs.split(",")] for k, vs in (g.split("=", 1) for g in a.grid)
    }
    print(json.dumps(sweep(grid, a.metric, not a.minimize, a.jobs), indent=2))


if __name__ == "__main__":
    main()
