"""The evaluation report: what each kind of pretraining bought, task by task, at the same compute.

Owns ``build_report``: reads the fine-tuning summaries (one JSON per task), the
pretraining metrics of every family and BERT's curves, and writes ``report.md``
(the seeds' table: rows = starting points, columns = tasks, with each family's
pretraining budget and the published points of Collobert et al. (2011); which rows
the seeds separate; then the per-task table against published BERT), ``metrics.json``
and PNG plots (score against pretraining compute; per-task bars; BERT's curves).
Scores are dev-set medians over seeds with their min-max spread; the GLUE average
is over the GLUE tasks that ran, each task's metrics averaged as GLUE does.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

from bertpipe.atomic import atomic_dir, atomic_write_text
from bertpipe.config import GLUE_TASKS
from bertpipe.evaluation.prediction_plots import plot_task
from bertpipe.evaluation.references import COLLOBERT, SEEDS_TABLE, reference_for
from bertpipe.metrics_file import write_summary_and_metrics


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


ROW_NAMES = {
    "scratch_rnn": "supervised Elman RNN (+attention), task only",
    "scratch_lstm": "supervised LSTM (+attention), task only",
    "scratch_gru": "supervised GRU (+attention), task only",
    "pretrained_elmo": "ELMo-style biLM + task model",
    "pretrained_gpt": "GPT-style LM, fine-tuned",
    "pretrained_modern": "modern encoder (ModernBERT-style), fine-tuned",
    "pretrained": "BERT, fine-tuned",
    "scratch": "BERT from scratch, task only",
    "scratch_modern": "modern encoder from scratch, task only",
}
"""The seeds' table's rows, in its order (supervised first); other inits follow by label."""


def _family_of(label: str) -> str | None:
    """The pretrained family a row's numbers come from (None: trained on the task alone)."""
    if label == "pretrained":
        return "bert"
    return label.removeprefix("pretrained_") if label.startswith("pretrained_") else None


def _cell(m: dict | None) -> str:
    return f"**{m['median']:.1f}** [{m['min']:.1f}-{m['max']:.1f}]" if m else "-"


def _budget_cell(pre: dict | None) -> str:
    if not pre:
        return "none (task only)"
    b = pre.get("budget", {})
    return (
        f"{pre['used/tokens'] / 1e6:.2f} M tokens, {pre['used/flops']:.2e} FLOPs, "
        f"{pre['steps']} steps, {pre['used/seconds'] / 60:.1f} min"
        + (f" (budget: {b['unit']} {b['given']:.3g})" if b else "")
    )


def _spread_notes(rows: list[dict], labels: list[str]) -> list[str]:
    """Per task, which neighbours (by median) the seeds separate and which they do not."""
    notes = []
    for r in rows:
        ranked = sorted(
            (label for label in labels if r["scores"].get(label)),
            key=lambda lb: r["scores"][lb]["median"],
            reverse=True,
        )
        parts = []
        for hi, lo in zip(ranked, ranked[1:], strict=False):
            a, b = r["scores"][hi], r["scores"][lo]
            if a["min"] <= b["max"]:
                parts.append(f"{hi} ~ {lo} (seed ranges overlap: no ranking)")
            else:
                parts.append(f"{hi} > {lo} (ranges disjoint)")
        if parts:
            notes.append(f"- **{r['task']}** ({r['metric']}): " + "; ".join(parts))
    return notes


def _seeds_table(rows: list[dict], labels: list[str], pre: dict[str, dict]) -> list[str]:
    order = [lb for lb in ROW_NAMES if lb in labels] + [lb for lb in labels if lb not in ROW_NAMES]
    head = "| row | " + " | ".join(f"{r['task']} ({r['metric']})" for r in rows)
    lines = [
        head + " | pretraining used | pretraining tokens/s |",
        "|---|" + "---|" * len(rows) + "---|---|",
    ]
    for label in order:
        fam = _family_of(label)
        p = pre.get(fam) if fam else None
        rate = f"{p['train/tokens_per_s']:,.0f}" if p and "train/tokens_per_s" in p else "-"
        lines.append(
            f"| {ROW_NAMES.get(label, label)} (`{label}`) | "
            + " | ".join(_cell(r["scores"].get(label)) for r in rows)
            + f" | {_budget_cell(p)} | {rate} |"
        )
    for kind, name in (
        ("supervised", "supervised window network"),
        ("pretrained", "+ LM-pretrained embeddings"),
    ):
        cells = []
        for r in rows:
            ref = SEEDS_TABLE.get(r["task"], {}).get(kind)
            cells.append(f"{ref[1]:.2f} ({ref[0]})" if ref else "")
        if any(cells):
            lines.append(
                f"| published: Collobert et al. 2011, {name} [C] | " + " | ".join(cells) + " | | |"
            )
    return lines


def _compute_plot(
    rows: list[dict], labels: list[str], pre: dict[str, dict], out: Path
) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        pts = []
        for label in labels:
            m = r["scores"].get(label)
            fam = _family_of(label)
            if m:
                x = pre[fam]["used/flops"] if fam and fam in pre else 0.0
                pts.append((x, m["median"], m["min"], m["max"], label))
        if not pts:
            continue
        pts.sort()
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, linestyle=":", label=r["task"])
    for fam, p in pre.items():
        ax.axvline(p["used/flops"], color="grey", alpha=0.3)
        ax.annotate(fam, (p["used/flops"], ax.get_ylim()[1]), fontsize=8, ha="center", va="bottom")
    ax.set_xlabel("pretraining compute, estimated FLOPs (0 = trained on the task alone)")
    ax.set_ylabel("dev score, median [min-max] over seeds, %")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "score_vs_compute.png", dpi=100)
    plt.close(fig)
    return "score_vs_compute.png"


ATTENTION_PAIR = ("the man went to the store .", "he bought a gallon of milk .")
"""The fixed sentence pair of the report's attention picture (the BERT paper's NSP example)."""


def build_report(
    finetune_summaries: list[Path],
    pretrain_summaries: Path | None,
    curves_dir: Path | None,
    model_size: str,
    out_dir: str | Path,
    bert_dir: Path | None = None,
    results_dir: Path | None = None,
    pretrained_families: tuple[str, ...] | None = None,
) -> dict:
    """Write ``out_dir/{report.md, summary.json, metrics.json, plots/*.png}``; return the
    summary (``metrics.json``, the DVC metrics file, holds its GLUE averages).

    ``pretrain_summaries`` and ``curves_dir`` hold one entry per pretrained family
    (``<family>.json``, ``<family>/``); ``results_dir`` the finetune stages' outputs, whose
    predictions give each task's confusion matrix or score histogram; ``pretrained_families``
    (``pretrain.families``) which families' metrics count (None: every file there)."""
    summaries = [json.loads(Path(p).read_text()) for p in sorted(finetune_summaries)]
    ran = [s for s in summaries if "skipped" not in s]
    skipped = [s for s in summaries if "skipped" in s]
    labels = list(dict.fromkeys(label for s in ran for label in s["results"]))
    families = {
        p.stem: json.loads(p.read_text())
        for p in (
            sorted(pretrain_summaries.glob("*.json"))
            if pretrain_summaries and pretrain_summaries.is_dir()
            else []
        )
        # a family dropped from pretrain.families may have left its file from an earlier run
        if pretrained_families is None or p.stem in pretrained_families
    }
    pre = families.get("bert", {})

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
            "baseline": (s.get("constant_baseline") or {}).get(metric),
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
        "pretrain": {
            fam: {k: v for k, v in p.items() if isinstance(v, (int, float))}
            for fam, p in families.items()
        },
        "tasks": {
            r["task"]: {label: r["scores"][label]["median"] for label in r["scores"]} for r in rows
        },
        "glue_average": {label: v["score"] for label, v in glue_avg.items()},
        "skipped": {s["task"]: s["skipped"] for s in skipped},
    }

    seeds = sorted({len(s["seeds"]) for s in ran}) or [0]
    lines = ["# bertpipe evaluation report", ""]
    if rows:
        lines += [
            "## What each kind of pretraining bought, at the same compute",
            "",
            "The seeds' table (Collobert et al., 2011) on this run's corpus and tasks. Each cell: "
            f"the dev-set score in percent, median over {'/'.join(map(str, seeds))} seeds "
            "[min-max]; rows that pretrained used the budget in their last columns (the same "
            "`pretrain.budget` for every family), rows marked task only never saw the corpus.",
            "",
            *_seeds_table(rows, labels, families),
            "",
            "Where the seeds separate the rows (neighbours by median; overlapping ranges are not "
            "ranked):",
            "",
            *_spread_notes(rows, labels),
            "",
            "![score against compute](plots/score_vs_compute.png)",
            "",
        ]
    for fam, p in families.items():
        if fam == "bert":
            continue
        accs = {
            k: v
            for k, v in p.items()
            if k.startswith("val/") and k.endswith("_acc") and "baseline" not in k
        }
        lines += [
            f"Pretraining `{fam}`: {p.get('n_parameters', 0):,} parameters; "
            + ", ".join(f"held-out {k[4:]} **{100 * v:.1f}%**" for k, v in accs.items())
            + f", perplexity {p.get('val/perplexity', float('nan')):.0f} against "
            f"{100 * p.get('val/unigram_baseline_acc', float('nan')):.1f}% for always predicting "
            f"the most frequent token; {_budget_cell(p)}.",
            "",
        ]
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
    lines += [
        "## Fine-tuning",
        "",
        f"Dev-set scores in percent: median over {'/'.join(map(str, seeds))} seeds, [min-max] below it. "
        "Constant predictor: the score of always answering the training set's majority class "
        "(regression: its mean; tagging: its most frequent tag). "
        "Published references are GLUE *test* scores (SQuAD: dev), from the source cited.",
        "",
        "| task | metric | "
        + " | ".join(labels)
        + " | constant predictor | published | train / dev examples |",
        "|---|---|" + "---|" * len(labels) + "---|---|---|",
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
        base = f"{r['baseline']:.1f}" if r["baseline"] is not None else "-"
        lines.append(
            f"| {r['task']} | {r['metric']} | "
            + " | ".join(cells)
            + f" | {base} | {ref_cell} | {r['train_examples']} / {r['dev_examples']} |"
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
    has_bert = bert_dir is not None and (bert_dir / "config.json").exists()
    if has_bert:
        lines += [
            "## Attention of the pretrained BERT",
            "",
            f'Every head of every layer on the pair "{ATTENTION_PAIR[0]}" / '
            f'"{ATTENTION_PAIR[1]}" (query tokens down, keys across; `bertpipe attention`).',
            "",
            "![attention](plots/attention.png)",
            "",
        ]
    predictions_at = len(lines)
    if sources or rows:
        lines += ["## Sources", ""] + [f"[{n}] {src}" for src, n in sources.items()]
        lines += [f"[C] {COLLOBERT}", ""]

    curves = (
        {name: _read_csv(curves_dir / "bert" / f"{name}.csv") for name in ("train", "val")}
        if curves_dir
        else {}
    )
    out_dir = Path(out_dir)
    pictures: list[str] = []
    with atomic_dir(out_dir / "plots") as tmp:
        _plots(rows, labels, curves, tmp)
        _compute_plot(rows, labels, families, tmp)
        if has_bert and bert_dir is not None:
            from bertpipe.inference.attention import attention, plot

            tokens, probs = attention(bert_dir, *ATTENTION_PAIR)
            plot(tokens, probs, tmp / "attention.png", " ".join(tokens))
        for s in ran:
            name = f"predictions_{s['task']}.png"
            caption = plot_task(s, results_dir, tmp / name) if results_dir else None
            if caption:
                pictures += [f"![{caption}](plots/{name})", ""]
    if pictures:
        lines[predictions_at:predictions_at] = [
            "## What the exported models predict",
            "",
            "On each task's dev set, the model the stage exported (the first starting point's "
            "best seed): gold rows against predicted columns, or predicted against gold scores.",
            "",
            *pictures,
        ]
    write_summary_and_metrics(
        out_dir / "summary.json",
        out_dir / "metrics.json",
        metrics,
        {"glue_average": metrics["glue_average"]},
    )
    atomic_write_text(out_dir / "report.md", "\n".join(lines))
    return metrics
