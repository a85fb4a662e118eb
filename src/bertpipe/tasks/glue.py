"""GLUE tasks: load any split from the mirror or the hub into the hub's schema.

Owns the per-task facts: text columns, label names, the official metrics (CoLA
Matthews correlation; SST-2, QNLI, RTE, WNLI, MNLI accuracy; MRPC F1 and accuracy;
QQP accuracy and F1; STS-B Pearson and Spearman), and how the mirror's
GLUE-distribution TSVs map onto the Hugging Face ``nyu-mll/glue`` columns, so
downstream code sees one schema whichever place the data came from. Mirror TSVs
are read with ``quoting=3`` (QUOTE_NONE): quotes inside SST-2/MRPC/QNLI sentences
otherwise swallow rows (see the mirror's MANIFEST.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from bertpipe.data import catalog


@dataclass(frozen=True)
class GlueTask:
    name: str
    text_a: str
    text_b: str | None
    labels: tuple[str, ...] | None
    """Label names in hub order; None for regression (STS-B)."""
    metrics: tuple[str, ...]
    """Reported metrics (``tasks/evaluators.py`` names), the one that picks the best epoch first."""
    mirror_columns: dict[str, str]
    """Mirror TSV column -> hub column."""
    header: bool = True
    names: tuple[str, ...] | None = None
    """Column names for header-less files (CoLA)."""


TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in [
        GlueTask(
            "cola",
            "sentence",
            None,
            ("unacceptable", "acceptable"),
            ("mcc",),
            {"sentence": "sentence", "label": "label"},
            header=False,
            names=("source", "label", "original_mark", "sentence"),
        ),
        GlueTask(
            "sst2",
            "sentence",
            None,
            ("negative", "positive"),
            ("acc",),
            {"sentence": "sentence", "label": "label"},
        ),
        GlueTask(
            "mrpc",
            "sentence1",
            "sentence2",
            ("not_equivalent", "equivalent"),
            ("f1", "acc"),
            {"#1 String": "sentence1", "#2 String": "sentence2", "Quality": "label"},
        ),
        GlueTask(
            "stsb",
            "sentence1",
            "sentence2",
            None,
            ("pearson", "spearman"),
            {"sentence1": "sentence1", "sentence2": "sentence2", "score": "label"},
        ),
        GlueTask(
            "qqp",
            "question1",
            "question2",
            ("not_duplicate", "duplicate"),
            ("acc", "f1"),
            {"question1": "question1", "question2": "question2", "is_duplicate": "label"},
        ),
        GlueTask(
            "mnli",
            "premise",
            "hypothesis",
            ("entailment", "neutral", "contradiction"),
            ("acc",),
            {"sentence1": "premise", "sentence2": "hypothesis", "gold_label": "label"},
        ),
        GlueTask(
            "qnli",
            "question",
            "sentence",
            ("entailment", "not_entailment"),
            ("acc",),
            {"question": "question", "sentence": "sentence", "label": "label"},
        ),
        GlueTask(
            "rte",
            "sentence1",
            "sentence2",
            ("entailment", "not_entailment"),
            ("acc",),
            {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"},
        ),
        GlueTask(
            "wnli",
            "sentence1",
            "sentence2",
            ("not_entailment", "entailment"),
            ("acc",),
            {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"},
        ),
    ]
}


def get_task(name: str) -> GlueTask:
    try:
        return TASKS[name]
    except KeyError:
        raise catalog.DatasetUnavailable(
            f"unknown GLUE task {name!r}; tasks: {', '.join(TASKS)}"
        ) from None


def load_split(name: str, split: str):
    """A ``datasets.Dataset`` with the hub's columns (text columns, ``label``, ``idx``)."""
    task = get_task(name)
    spec = catalog.get_spec(name)
    root = catalog.mirror_root()
    if root is None:
        return catalog.load_spec_from_hub(spec, split, streaming=False)
    import datasets

    files = catalog.mirror_files(spec, split, root)
    kwargs = dict(sep="\t", quoting=3, keep_default_na=False, encoding="utf-8-sig")
    if not task.header:
        kwargs.update(header=None, names=list(task.names or ()))
    ds = datasets.load_dataset("csv", data_files=[str(f) for f in files], split="train", **kwargs)
    missing = [c for c in task.mirror_columns if c not in ds.column_names]
    if missing:
        raise catalog.DatasetUnavailable(
            f"{files[0]}: missing column(s) {missing}; found {ds.column_names}"
        )
    ds = ds.select_columns(list(task.mirror_columns)).rename_columns(
        {k: v for k, v in task.mirror_columns.items() if k != v}
    )

    def to_label(row):
        value = row["label"]
        if task.labels is None:
            return {"label": float(value)}
        if isinstance(value, str) and not value.lstrip("-").isdigit():
            return {"label": task.labels.index(value)}
        return {"label": int(value)}

    features = ds.features.copy()
    features["label"] = (
        datasets.Value("float32")
        if task.labels is None
        else datasets.ClassLabel(names=list(task.labels or ()))
    )
    ds = ds.map(to_label, features=features)
    return ds.add_column("idx", list(range(len(ds))))
