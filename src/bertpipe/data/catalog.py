"""Named datasets: where each lives on the Hugging Face hub and in a mirror directory.

Owns the catalog (pretraining corpora, every GLUE task, SQuAD v1.1/v2.0) and the
rule that decides where data is read from:

* ``BERTPIPE_DATA_MIRROR=<dir>`` set: read only the mirror, never the network
  (an air-gapped cluster). A dataset missing there fails at once, naming it and
  the file that was expected.
* unset: ``datasets.load_dataset`` from the hub, after a connection probe of a
  few seconds so an unreachable hub fails fast instead of hanging.

The mirror layout is the one of ``shared/data`` (see its MANIFEST.md). Hub
revisions: the hub cannot be reached from the machines this was written on, so
no commit sha could be looked up and verified; entries carry ``revision=None``
and a run logs a warning until a revision is pinned via the source's
``hub_revision`` (see docs/LOG.md).
"""

from __future__ import annotations

import glob
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from bertpipe.errors import UserError

log = logging.getLogger(__name__)

MIRROR_ENV = "BERTPIPE_DATA_MIRROR"


class DatasetUnavailable(UserError, RuntimeError):
    """A dataset that cannot be read from the configured place; the message says what to do."""


@dataclass(frozen=True)
class DatasetSpec:
    """One named dataset. ``mirror`` maps split -> glob relative to the mirror root."""

    name: str
    kind: Literal["corpus", "glue", "squad", "tagging"]
    description: str
    hub_id: str | None
    hub_config: str | None = None
    hub_revision: str | None = None
    hub_splits: dict[str, str] = field(default_factory=dict)
    """Our split name -> the hub's split name (GLUE 'dev' is the hub's 'validation')."""
    mirror: dict[str, str] = field(default_factory=dict)
    format: Literal["txt", "jsonl", "tsv", "json", "conll"] = "jsonl"
    text_field: str = "text"
    doc_separator: Literal["blank_line", "line", "file", "wikitext"] = "blank_line"
    note: str = ""


def _glue(
    name: str, hub_config: str, folder: str, splits: dict[str, str], note: str = ""
) -> DatasetSpec:
    hub_names = {
        "train": "train",
        "dev": "validation",
        "dev_matched": "validation_matched",
        "dev_mismatched": "validation_mismatched",
    }
    return DatasetSpec(
        name=name,
        kind="glue",
        description=f"GLUE {folder}",
        hub_id="nyu-mll/glue",
        hub_config=hub_config,
        hub_splits={s: hub_names[s] for s in splits},
        mirror={s: f"glue/{folder}/{f}" for s, f in splits.items()},
        format="tsv",
        note=note,
    )


_TRAIN_DEV = {"train": "train.tsv", "dev": "dev.tsv"}

CATALOG: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec(
            "wikipedia",
            "corpus",
            "English Wikipedia article text",
            hub_id="wikimedia/wikipedia",
            hub_config="20231101.en",
            hub_splits={"train": "train"},
            mirror={"train": "corpus/wikipedia/*.jsonl.xz"},
        ),
        DatasetSpec(
            "gutenberg",
            "corpus",
            "Project Gutenberg public-domain books",
            hub_id="manu/project_gutenberg",
            hub_splits={"train": "en"},
            mirror={"train": "corpus/gutenberg/*.jsonl.xz"},
        ),
        DatasetSpec(
            "us_speeches",
            "corpus",
            "US presidential inaugural and State of the Union addresses (NLTK)",
            hub_id=None,
            mirror={"train": "corpus/us_presidential_speeches/*.jsonl.xz"},
            note="mirror only: no hub copy",
        ),
        DatasetSpec(
            "tinyshakespeare",
            "corpus",
            "Shakespeare plays (char-rnn tinyshakespeare)",
            hub_id="karpathy/tiny_shakespeare",
            hub_splits={"train": "train"},
            mirror={"train": "corpus/tinyshakespeare/input.txt.xz"},
            format="txt",
            doc_separator="file",
        ),
        DatasetSpec(
            "wikitext-103",
            "corpus",
            "WikiText-103 raw",
            hub_id="Salesforce/wikitext",
            hub_config="wikitext-103-raw-v1",
            hub_splits={"train": "train", "dev": "validation", "test": "test"},
            mirror={
                "train": "corpus/wikitext-103-raw/wiki.train.raw*",
                "dev": "corpus/wikitext-103-raw/wiki.valid.raw*",
                "test": "corpus/wikitext-103-raw/wiki.test.raw*",
            },
            format="txt",
            doc_separator="wikitext",
        ),
        DatasetSpec(
            "wikitext-2",
            "corpus",
            "WikiText-2 raw (held-out perplexity)",
            hub_id="Salesforce/wikitext",
            hub_config="wikitext-2-raw-v1",
            hub_splits={"train": "train", "dev": "validation", "test": "test"},
            mirror={
                "train": "corpus/wikitext-2-raw/wiki.train.raw*",
                "dev": "corpus/wikitext-2-raw/wiki.valid.raw*",
                "test": "corpus/wikitext-2-raw/wiki.test.raw*",
            },
            format="txt",
            doc_separator="wikitext",
        ),
        _glue("cola", "cola", "CoLA", _TRAIN_DEV),
        _glue("sst2", "sst2", "SST-2", _TRAIN_DEV),
        _glue("mrpc", "mrpc", "MRPC", _TRAIN_DEV),
        _glue("stsb", "stsb", "STS-B", _TRAIN_DEV),
        _glue("qqp", "qqp", "QQP", _TRAIN_DEV),
        _glue(
            "mnli",
            "mnli",
            "MNLI",
            {
                "train": "train.tsv",
                "dev_matched": "dev_matched.tsv",
                "dev_mismatched": "dev_mismatched.tsv",
            },
        ),
        _glue("qnli", "qnli", "QNLI", _TRAIN_DEV),
        _glue("rte", "rte", "RTE", _TRAIN_DEV),
        _glue("wnli", "wnli", "WNLI", _TRAIN_DEV),
        DatasetSpec(
            "squad",
            "squad",
            "SQuAD v1.1",
            hub_id="rajpurkar/squad",
            hub_config="plain_text",
            hub_splits={"train": "train", "dev": "validation"},
            mirror={
                "train": "squad/v1.1/train_reconstructed.json.gz",
                "dev": "squad/v1.1/dev.json.gz",
            },
            format="json",
            note="mirror train is rebuilt; 9,438 answer positions are guesses "
            "(squad/v1.1/train_reconstructed.ambiguous_ids.tsv)",
        ),
        DatasetSpec(
            "squad_v2",
            "squad",
            "SQuAD v2.0",
            hub_id="rajpurkar/squad_v2",
            hub_config="squad_v2",
            hub_splits={"train": "train", "dev": "validation"},
            mirror={
                "train": "squad/v2.0/train.json.gz",
                "dev": "squad/v2.0/dev_reconstructed.json.gz",
            },
            format="json",
            note="mirror has only a rebuilt dev split",
        ),
        DatasetSpec(
            "ptb_pos",
            "tagging",
            "Penn Treebank WSJ sample (NLTK, wsj_0001-0199) with gold POS tags, 45 tags",
            hub_id=None,
            mirror={
                "train": "tagging/ptb_pos_sample/train.conll",
                "dev": "tagging/ptb_pos_sample/dev.conll",
                "test": "tagging/ptb_pos_sample/test.conll",
            },
            format="conll",
            note="split by file number (train 0001-0149, dev 0150-0174, test 0175-0199)",
        ),
        DatasetSpec(
            "conll2000",
            "tagging",
            "CoNLL-2000 chunking (WSJ sections 15-18 train, 20 test), IOB2 chunk tags",
            hub_id=None,
            mirror={"train": "tagging/conll2000/train.txt", "test": "tagging/conll2000/test.txt"},
            format="conll",
            note="no dev split: the shared task reported on test",
        ),
    ]
}
CATALOG["books"] = CATALOG["gutenberg"]  # alias: BookCorpus is not redistributable


def get_spec(name: str) -> DatasetSpec:
    try:
        return CATALOG[name]
    except KeyError:
        raise DatasetUnavailable(
            f"unknown dataset {name!r}. Known datasets: {', '.join(sorted(CATALOG))}. "
            "For your own files use a source with 'path:' instead of 'dataset:'."
        ) from None


def mirror_root() -> Path | None:
    value = os.environ.get(MIRROR_ENV)
    if not value:
        return None
    root = Path(value).expanduser()
    if not root.is_dir():
        raise DatasetUnavailable(f"{MIRROR_ENV}={value} is not a directory")
    return root


def discover_mirror(root: str | Path = ".") -> Path | None:
    """A mirror beside the checkout (``../shared/data``), or beside the repository it was
    cloned from: the rule the Makefile applies, for entry points run without it."""
    import subprocess

    root = Path(root).resolve()
    candidates = [root.parent / "shared" / "data"]
    try:
        origin = subprocess.run(
            ["git", "config", "--get", "remote.origin.url"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        origin = ""
    if origin and Path(origin).is_dir():
        candidates.append(Path(origin).resolve().parent / "shared" / "data")
    return next((c for c in candidates if (c / "MANIFEST.md").is_file()), None)


def use_discovered_mirror(root: str | Path = ".") -> Path | None:
    """Set ``BERTPIPE_DATA_MIRROR`` to the discovered mirror when it is unset; returns it."""
    if os.environ.get(MIRROR_ENV):
        return Path(os.environ[MIRROR_ENV])
    found = discover_mirror(root)
    if found is not None:
        os.environ[MIRROR_ENV] = str(found)
        log.info("datasets: reading the mirror at %s (%s)", found, MIRROR_ENV)
    return found


def mirror_files(spec: DatasetSpec, split: str, root: Path) -> list[Path]:
    """The files of ``spec``/``split`` in the mirror, or a DatasetUnavailable that says what is missing."""
    pattern = spec.mirror.get(split)
    if pattern is None:
        raise DatasetUnavailable(
            f"dataset {spec.name!r} has no split {split!r}; splits: {', '.join(spec.mirror)}"
        )
    files = sorted(Path(p) for p in glob.glob(str(root / pattern)))
    if not files:
        hub = f"the hub ({spec.hub_id})" if spec.hub_id else "another copy (no hub copy exists)"
        raise DatasetUnavailable(
            f"dataset {spec.name!r} split {split!r} is not in the mirror {root}: expected "
            f"{root / pattern}. Add it to the mirror, drop it from params.yaml, or unset "
            f"{MIRROR_ENV} to read it from {hub}."
        )
    return files


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def check_hub_reachable(dataset: str, timeout: float = 3.0) -> None:
    """Fail within ``timeout`` seconds when the hub cannot be reached (no 25-second hangs)."""
    if _truthy("HF_HUB_OFFLINE") or _truthy("HF_DATASETS_OFFLINE"):
        return  # datasets answers from its cache or fails at once by itself
    url = urlparse(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as e:
        raise DatasetUnavailable(
            f"dataset {dataset!r}: the Hugging Face hub at {hub_endpoint()} is unreachable ({e}). "
            f"Set {MIRROR_ENV}=<dir> to read a local mirror, or HF_HUB_OFFLINE=1 to use the "
            "local datasets cache."
        ) from None


def load_spec_from_hub(spec: DatasetSpec, split: str, streaming: bool, revision: str | None = None):
    """A catalog dataset's ``split`` from the hub (``revision`` overrides the catalog's pin)."""
    if spec.hub_id is None:
        raise DatasetUnavailable(
            f"dataset {spec.name!r} exists only in a mirror ({spec.note}); set "
            f"{MIRROR_ENV}=<dir> (e.g. the shared/data folder)"
        )
    return load_hub(
        spec.name,
        spec.hub_id,
        spec.hub_config,
        revision or spec.hub_revision,
        spec.hub_splits.get(split, split),
        streaming=streaming,
    )


def load_hub(
    dataset: str, path: str, config: str | None, revision: str | None, split: str, streaming: bool
):
    """``datasets.load_dataset`` with our error messages. ``path`` may be a hub id or a local dataset dir."""
    import datasets

    if not Path(path).exists():
        check_hub_reachable(dataset)
        if revision is None:
            log.warning("dataset %r: hub revision not pinned; results may change upstream", dataset)
    try:
        return datasets.load_dataset(
            path, config, revision=revision, split=split, streaming=streaming
        )
    except (FileNotFoundError, ConnectionError, ValueError) as e:
        raise DatasetUnavailable(
            f"dataset {dataset!r} ({path}, config={config}, split={split}) could not be loaded: "
            f"{e}. Set {MIRROR_ENV}=<dir> to read a local mirror."
        ) from e
