"""The flow's results artifact: what ran, the scores, the registered models, the MLflow link."""

from __future__ import annotations


def results_markdown(
    stages: list[dict], report: dict, promoted: list[dict], mlflow_url: str, mlflow_run_id: str
) -> str:
    """``report`` is the evaluate stage's ``reports/summary.json``."""
    inits = list(dict.fromkeys(label for scores in report["tasks"].values() for label in scores))
    lines = ["| stage | state |", "|---|---|"]
    lines += [f"| {r['stage']} | {'ran' if r['ran'] else 'skipped (unchanged)'} |" for r in stages]
    lines += ["", "| task | " + " | ".join(inits) + " |", "|---|" + "---|" * len(inits)]
    for name, scores in report["tasks"].items():
        lines.append(
            f"| {name} | " + " | ".join(f"{scores.get(i, float('nan')):.1f}" for i in inits) + " |"
        )
    lines += [
        "",
        f"GLUE average: {report['glue_average']}",
        f"Skipped: {sorted(report['skipped'])}",
        "",
        "| registered model | version | champion |",
        "|---|---|---|",
    ]
    lines += [
        f"| {p['model']} | {p['version']} | {'yes' if p['promoted'] else 'no'} |" for p in promoted
    ]
    lines += ["", f"MLflow run: [{mlflow_run_id}]({mlflow_url})"]
    return "\n".join(lines)
