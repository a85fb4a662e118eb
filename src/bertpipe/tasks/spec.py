"""What a fine-tuning task is, whichever place it comes from.

Owns ``TaskSpec`` and ``resolve_task``: GLUE tasks, SQuAD v1.1/v2.0 and user tasks
from ``params.yaml`` become one description (kind, label set, metrics, a loader
per split), and every loader returns a ``datasets.Dataset`` in its kind's schema:

- classification / regression: ``text_a``, ``text_b`` (pairs only), ``label``
  (class index, or float score);
- token_classification: ``tokens`` (words), ``tags`` (tag indices);
- qa: the SQuAD schema ``id, title, context, question, answers{text, answer_start}``.

A split that is not available (a GLUE task with dev data only in the mirror)
raises ``catalog.DatasetUnavailable``, which the stage turns into a skip note.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from bertpipe.config import GLUE_TASKS, SQUAD_TASKS, TAGGING_TASKS, FinetuneConfig, UserTaskConfig
from bertpipe.data.catalog import DatasetUnavailable
from bertpipe.errors import UserError
from bertpipe.tasks.kinds import KINDS, USER_KINDS, TaskKind

if TYPE_CHECKING:
    import datasets


class UnknownTaskError(UserError, KeyError):
    """A task name that is neither built in nor a ``finetune.user_tasks`` entry."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: TaskKind
    labels: tuple[str, ...] | None
    """Class or tag names in index order; None for regression and QA."""
    metrics: tuple[str, ...]
    """Reported metric names (see ``tasks.evaluators``); the first is the one that picks the best epoch."""
    load: Callable[[str], datasets.Dataset]
    """split ('train' or 'dev') -> datasets.Dataset in the internal schema."""
    unanswerable: bool = False
    """QA with unanswerable questions (SQuAD v2.0): a no-answer score and threshold."""
    origin: str = ""
    """Where the data comes from, for the report."""
    extra_dev: tuple[str, ...] = ()
    """Further splits scored with the best model, metrics prefixed by the split (MNLI mismatched,
    a user task's ``test``); never used to pick the epoch."""
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Where a file for ``bertpipe predict`` holds each input: internal name (``text_a``,
    ``text_b``, ``label``) -> the column names accepted (the task's own first)."""
    file_names: tuple[str, ...] | None = None
    """Column names of the task's header-less files (CoLA's TSVs)."""
    conll_columns: tuple[int, int] = (0, -1)
    """CoNLL files: the word's and the tag's column."""

    @property
    def selection_metric(self) -> str:
        return self.metrics[0]

    @property
    def num_labels(self) -> int:
        return self.kind.num_labels(self)


def _glue(name: str) -> TaskSpec:
    from bertpipe.tasks import glue

    task = glue.get_task(name)

    def load(split: str):
        ds = glue.load_split(name, "dev_matched" if name == "mnli" and split == "dev" else split)
        cols = {task.text_a: "text_a", **({task.text_b: "text_b"} if task.text_b else {})}
        return ds.select_columns([*cols, "label"]).rename_columns(cols)

    kind = KINDS["regression" if task.labels is None else "classification"]
    hub = {
        "text_a": task.text_a,
        "label": "label",
        **({"text_b": task.text_b} if task.text_b else {}),
    }
    mirror = {v: k for k, v in task.mirror_columns.items()}
    return TaskSpec(
        name,
        kind,
        task.labels,
        task.metrics,
        load,
        origin=f"GLUE {name}",
        extra_dev=("dev_mismatched",) if name == "mnli" else (),
        columns={k: tuple(dict.fromkeys((c, mirror.get(c, c), k))) for k, c in hub.items()},
        file_names=task.names,
    )


def _squad(name: str, cfg: FinetuneConfig) -> TaskSpec:
    from bertpipe.tasks import squad

    v2 = name == "squad_v2"

    def load(split: str):
        return squad.load_split(
            name, split, exclude_ambiguous=cfg.squad_exclude_ambiguous and split == "train"
        )

    metrics = (
        ("best_f1", "best_exact", "f1", "exact_match", "HasAns_f1", "NoAns_f1")
        if v2
        else ("f1", "exact_match")
    )
    return TaskSpec(
        name,
        KINDS["qa"],
        None,
        metrics,
        load,
        unanswerable=v2,
        origin="SQuAD v2.0" if v2 else "SQuAD v1.1",
    )


def _user(name: str, ucfg: UserTaskConfig, origin: str | None = None) -> TaskSpec:
    from bertpipe.tasks import user

    kind = USER_KINDS[ucfg.kind]
    labels = ucfg.labels if ucfg.labels is not None else user.infer_labels(name, ucfg, kind)
    metrics = kind.user_metrics(ucfg, labels)

    def load(split: str):
        return user.load_split(name, ucfg, split, labels, kind)

    columns = {"text_a": ucfg.text_a, "label": ucfg.label}
    if ucfg.text_b is not None:
        columns["text_b"] = ucfg.text_b
    return TaskSpec(
        name,
        kind,
        labels,
        metrics,
        load,
        origin=origin or f"user task ({ucfg.train})",
        extra_dev=("test",) if ucfg.test is not None else (),
        columns={k: tuple(dict.fromkeys((c, k))) for k, c in columns.items()},
        conll_columns=(ucfg.token_column, ucfg.tag_column),
    )


def _tagging(name: str) -> TaskSpec:
    from bertpipe.tasks import tagging

    try:
        ucfg = tagging.task_config(name)
    except DatasetUnavailable as e:
        reason = str(e)

        def unavailable(split: str):
            raise DatasetUnavailable(reason)

        return TaskSpec(name, USER_KINDS["token_classification"], None, ("token_acc",), unavailable)
    return _user(name, ucfg, tagging.TAGGING[name].origin)


def resolve_task(name: str, cfg: FinetuneConfig) -> TaskSpec:
    """The spec of ``name``: a GLUE task, squad, squad_v2, or a ``finetune.user_tasks`` entry.

    Its loader reads each split once per process (every init and seed reuse it).
    """
    if name in cfg.user_tasks:
        spec = _user(name, cfg.user_tasks[name])
    elif name in TAGGING_TASKS:
        spec = _tagging(name)
    elif name in GLUE_TASKS:
        spec = _glue(name)
    elif name in SQUAD_TASKS:
        spec = _squad(name, cfg)
    else:
        known = ", ".join([*GLUE_TASKS, *SQUAD_TASKS, *TAGGING_TASKS, *cfg.user_tasks])
        raise UnknownTaskError(
            f"unknown task {name!r}; known: {known}; define your own under "
            "finetune.user_tasks in params.yaml"
        )
    return replace(spec, load=functools.lru_cache(maxsize=None)(spec.load))
