"""The DAG the flow runs, read from DVC: stages in generations of ones that can run side by side.

Owns one thing: ``dvc.yaml`` (with ``foreach`` expanded from params.yaml) as an
ordered list of generations. A generation's stages depend only on earlier
generations, so they may run concurrently (the ``finetune@TASK`` fan-out is one
generation). A stage added to ``dvc.yaml`` appears here with no flow edit.
"""

from __future__ import annotations

import os


def stage_generations(workdir: str) -> list[list[str]]:
    """Stage names (``corpus``, ``finetune@cola``, ...) grouped by topological generation."""
    import networkx as nx
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    with Repo(workdir) as repo:
        graph = repo.index.graph  # an edge points from a stage to a stage it depends on
        order = {
            stage.name: i
            for i, stage in enumerate(repo.index.stages)
            if isinstance(stage, PipelineStage)
        }
        generations = [
            sorted(
                (s.name for s in gen if isinstance(s, PipelineStage)), key=lambda name: order[name]
            )
            for gen in nx.topological_generations(graph.reverse(copy=False))
        ]
    return [g for g in generations if g]


def default_parallelism() -> int:
    """Concurrent stages the cores allow: cores / torch threads per stage (``OMP_NUM_THREADS``)."""
    cores = os.cpu_count() or 1
    threads = int(os.environ.get("OMP_NUM_THREADS") or cores)
    return max(1, cores // max(1, threads))
