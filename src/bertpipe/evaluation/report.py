"""The evaluation report: what pretraining bought, task by task, against published BERT.

Owns ``build_report``: reads the fine-tuning summaries (one JSON per task), the
pretraining metrics and curves, and writes ``report.md``, ``metrics.json`` and PNG
plots (per-task scores as bars against the references; pretraining curves).
Scores are dev-set medians over seeds with their min-max spread; the GLUE average
is over the GLUE tasks that ran, each task's metrics averaged as GLUE does.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

from bertpipe.atomic import atomic_dir, atomic_write_text, write_json
from bertpipe.config import GLUE_TASKS
from bertpipe.evaluation.references import reference_for


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(f)
        ]


def _task_score(summary: dict, label: str) -> float | None:
    """GLUE-style single number of a task for one init: the mean of its metrics' medians."""
    res = summary.get("results", {}).get(label)
    if res is None:
        return None
    names = [m for m in summary["metrics"] if m in res["summary"]]
    if summary["task"] == "mnli" and "dev_mismatched_acc" in res["summary"]:
        names.append("dev_mismatched_acc")
    return statistics.mean(res["summary"][n]["median"] for n in names)


def _plots(
    rows: list[dict], labels: list[str], curves: dict[str, list[dict]], out: Path
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    if rows:
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows)), 4))
        width = 0.8 / (len(labels) + 1)
        for j, label in enumerate([*labels, "reference"]):
            xs = [i + j * width for i in range(len(rows))]
            ys = [
                r["scores"].get(label, {}).get("median", 0)
                if label != "reference"
                else (r["reference"]["score"] if r["reference"] else 0)
                for r in rows
            ]
            ax.bar(xs, ys, width, label=label)
        ax.set_xticks(
            [i + width * len(labels) / 2 for i in range(len(rows))],
            [f"{r['task']}\n{r['metric']}" for r in rows],
        )
        ax.set_ylabel("dev score (median over seeds), %")
        ax.legend(fontsize=8)
        ax.set_title("Fine-tuning: our inits vs published BERT (test)")
        fig.tight_layout()
        fig.savefig(out / "finetune_scores.png", dpi=100)
        plt.close(fig)
        made.append("finetune_scores.png")
    if curves.get("train"):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for key in ("mlm_loss", "nsp_loss"):
            pts = [(r["step"], r[key]) for r in curves["train"] if key in r]
            if pts:
                axes[0].plot(*zip(*pts), label=key)
        for key in ("mlm_acc", "nsp_acc"):
            pts = [(r["step"], r[key]) for r in curves.get("val", []) if key in r]
            if pts:
                axes[1].plot(*zip(*pts), marker="o", label=f"val {key}")
        axes[0].set_title("pretraining loss")
        axes[1].set_title("held-out accuracy")
        for ax in axes:
            ax.set_xlabel("step")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "pretrain_curves.png", dpi=100)
        plt.close(fig)
        made.append("pretrain_curves.png")
    return made


def build_report(
    finetune_metrics: list[Path],
    pretrain_metrics: Path | None,
    curves_dir: Path | None,
    model_size: str,
    out_dir: str | Path,
) -> dict:
    """Write ``out_dir/{report.md, metrics.json, plots/*.png}``; return the metrics dict."""
    summaries = [json.loads(Path(p).read_text()) for p in sorted(finetune_metrics)]
    ran = [s for s in summaries if "skipped" not in s]
    skipped = [s for s in summaries if "skipped" in s]
    labels = list(dict.fromkeys(label for s in ran for label in s["results"]))
    pre = (
        json.loads(pretrain_metrics.read_text())
        if pretrain_metrics and pretrain_metrics.exists()
        else {}
    )

    rows: list[dict] = []
    sources: dict[str, int] = {}
    for s in ran:
        metric = s["selection_metric"]
        ref = reference_for(model_size, s["task"])
        row = {
            "task": s["task"],
            "metric": metric,
            "scores": {},
            "reference": None,
            "train_examples": None,
            "dev_examples": None,
        }
        for label in labels:
            res = s["results"].get(label)
            if res:
                row["scores"][label] = res["summary"][metric]
                row["train_examples"] = res["runs"][0]["train_examples"]
                row["dev_examples"] = res["runs"][0]["dev_examples"]
        if ref:
            name, ref_metric, score, source = ref
            sources.setdefault(source, len(sources) + 1)
            row["reference"] = {
                "model": name,
                "metric": ref_metric,
                "score": score,
                "cite": sources[source],
            }
        rows.append(row)

    glue_avg = {}
    for label in labels:
        scores = [_task_score(s, label) for s in ran if s["task"] in GLUE_TASKS]
        vals = [v for v in scores if v is not None]
        if vals:
            glue_avg[label] = {"score": statistics.mean(vals), "tasks": len(vals)}

    metrics = {
        "pretrain": {k: v for k, v in pre.items() if isinstance(v, (int, float))},
        "tasks": {
            r["task"]: {label: r["scores"][label]["median"] for label in r["scores"]} for r in rows
        },
        "glue_average": {label: v["score"] for label, v in glue_avg.items()},
        "skipped": {s["task"]: s["skipped"] for s in skipped},
    }

    lines = ["# bertpipe evaluation report", ""]
    if pre:
        lines += [
            "## Pretraining",
            "",
            f"Model size `{model_size}`, {pre.get('steps', '?')} steps. Held-out MLM accuracy "
            f"**{100 * pre.get('val/mlm_acc', float('nan')):.1f}%** against "
            f"{100 * pre.get('val/unigram_baseline_acc', float('nan')):.1f}% for always predicting the most "
            f"frequent token; NSP accuracy {100 * pre.get('val/nsp_acc', float('nan')):.1f}%; "
            f"median {pre.get('train/tokens_per_s', float('nan')):,.0f} training tokens/s.",
            "",
        ]
        for sentence, top in (pre.get("fill_mask") or {}).items():
            lines.append(f"- `{sentence}` -> {', '.join(top)}")
        lines.append("")
    seeds = sorted({len(s["seeds"]) for s in ran}) or [0]
    lines += [
        "## Fine-tuning",
        "",
        f"Dev-set scores in percent: median over {'/'.join(map(str, seeds))} seeds, [min-max] below it. "
        "Published references are GLUE *test* scores (SQuAD: dev), from the source cited.",
        "",
        "| task | metric | " + " | ".join(labels) + " | published | train / dev examples |",
        "|---|---|" + "---|" * len(labels) + "---|---|",
    ]
    for r in rows:
        cells = []
        for label in labels:
            m = r["scores"].get(label)
            cells.append(f"**{m['median']:.1f}** [{m['min']:.1f}-{m['max']:.1f}]" if m else "-")
        ref = r["reference"]
        ref_cell = (
            f"{ref['score']:.1f} {ref['model']} ({ref['metric']}) [{ref['cite']}]" if ref else "-"
        )
        lines.append(
            f"| {r['task']} | {r['metric']} | "
            + " | ".join(cells)
            + f" | {ref_cell} | {r['train_examples']} / {r['dev_examples']} |"
        )
    if glue_avg:
        lines += [
            "",
            "GLUE average over the GLUE tasks that ran (each task's metrics averaged): "
            + "; ".join(
                f"{label} **{v['score']:.1f}** ({v['tasks']} tasks)"
                for label, v in glue_avg.items()
            ),
        ]
    if skipped:
        lines += ["", "## Skipped tasks", ""]
        lines += [f"- **{s['task']}**: {s['skipped']}" for s in skipped]
    lines += [
        "",
        "## Plots",
        "",
        "![scores](plots/finetune_scores.png)",
        "",
        "![pretraining](plots/pretrain_curves.png)",
        "",
    ]
    if sources:
        lines += ["## Sources", ""] + [f"[{n}] {src}" for src, n in sources.items()] + [""]

    curves = (
        {name: _read_csv(curves_dir / f"{name}.csv") for name in ("train", "val")}
        if curves_dir
        else {}
    )
    out_dir = Path(out_dir)
    with atomic_dir(out_dir / "plots") as tmp:
        _plots(rows, labels, curves, tmp)
    write_json(out_dir / "metrics.json", metrics)
    atomic_write_text(out_dir / "report.md", "\n".join(lines))
    return metrics
