"""MLflow metric histories read back, and what is wrong with one against a reference."""

from __future__ import annotations

from collections import Counter


def metric_steps(client, run_id: str) -> dict[str, list[int]]:
    """Every training metric of the run -> the steps it was logged at, sorted, repeats kept.

    ``system/*`` (MLflow's machine samples, one per second of wall clock) are left out: their
    count depends on how long the run took, not on what it trained."""
    keys = [k for k in client.get_run(run_id).data.metrics if not k.startswith("system/")]
    return {k: sorted(m.step for m in client.get_metric_history(run_id, k)) for k in keys}


def history_problems(reference: dict[str, list[int]], got: dict[str, list[int]]) -> list[str]:
    """Keys or steps missing from ``got``, extra ones, and steps logged more than once."""
    problems = []
    for key in sorted(set(reference) | set(got)):
        want, have = reference.get(key, []), got.get(key, [])
        repeats = sorted(s for s, n in Counter(have).items() if n > 1)
        if repeats:
            problems.append(f"{key}: steps logged twice {repeats}")
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        if missing:
            problems.append(f"{key}: missing steps {missing}")
        if extra:
            problems.append(f"{key}: unexpected steps {extra}")
    return problems
