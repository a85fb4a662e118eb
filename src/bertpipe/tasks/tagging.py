"""The built-in word-tagging tasks: WSJ POS (``ptb_pos``) and CoNLL-2000 chunking (``conll2000_chunk``).

The seeds' table rows (Collobert et al., 2011): CoNLL files from the mirror's
``tagging/`` (catalog entries ``ptb_pos`` and ``conll2000``), read by the user-task
reader (``tasks/user.py``) as a ``token_classification`` task, so they are scored
as every tagging task is: POS tags are not IOB, so token accuracy; chunk tags are
IOB2, so chunk F1 over spans (seqeval, the CoNLL-2000 measure).

Splits: POS trains on ``train`` and is scored on ``dev`` (the treebank sample's
split by file number; its ``test`` is left untouched). CoNLL-2000 has no dev split
and the shared task reported on ``test``: it is the scored split here, so the
epoch kept by the dev metric is chosen on it, as a number reported on test would
be by a shared-task entrant who kept the best epoch (at most ``hparams.epochs`` choices).
"""

from __future__ import annotations

from dataclasses import dataclass

from bertpipe.config import UserTaskConfig
from bertpipe.data.catalog import DatasetUnavailable, get_spec, mirror_files, mirror_root
from bertpipe.tasks.user import conll_sentences


@dataclass(frozen=True)
class TaggingTask:
    dataset: str
    """Catalog name of the files."""
    dev_split: str
    tag_column: int
    entity_f1: bool
    origin: str


TAGGING = {
    "ptb_pos": TaggingTask("ptb_pos", "dev", 1, False, "Penn Treebank WSJ sample, POS (dev)"),
    "conll2000_chunk": TaggingTask(
        "conll2000", "test", 2, True, "CoNLL-2000 chunking (WSJ section 20, the test set)"
    ),
}


def task_config(name: str) -> UserTaskConfig:
    """The task as a user task over the mirror's files; DatasetUnavailable without the mirror."""
    task = TAGGING[name]
    spec = get_spec(task.dataset)
    root = mirror_root()
    if root is None:
        raise DatasetUnavailable(
            f"{name}: the {spec.description} is read from the dataset mirror only "
            "(BERTPIPE_DATA_MIRROR is unset); it has no hub copy"
        )
    train = mirror_files(spec, "train", root)[0]
    dev = mirror_files(spec, task.dev_split, root)[0]
    # The tag set of both files: CoNLL-2000's test has I-LST, which its train never uses.
    found = {
        t
        for path in (train, dev)
        for _, _, tags in conll_sentences(path, 0, task.tag_column)
        for t in tags
    }
    return UserTaskConfig(
        labels=tuple(sorted(found, key=lambda t: (t != "O", t))),
        kind="token_classification",
        train=str(train),
        dev=str(dev),
        format="conll",
        token_column=0,
        tag_column=task.tag_column,
        entity_f1=task.entity_f1,
    )
