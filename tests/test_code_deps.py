"""DVC code deps are derived from imports: each stage lists every file its entry module can run."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertpipe import code_deps
from bertpipe.code_deps import import_closure, stage_entry_modules, uncovered, unused

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("stage", sorted(stage_entry_modules(ROOT / "dvc.yaml")))
def test_stage_deps_cover_its_import_closure_and_nothing_stale(stage):
    module, deps = stage_entry_modules(ROOT / "dvc.yaml")[stage]
    closure = import_closure(module)
    assert f"bertpipe/stages/{stage.split('@')[0]}.py" in map(str, closure)
    assert uncovered(closure, deps) == [], f"add to {stage}'s deps in dvc.yaml"
    assert unused(closure, deps) == [], f"{stage} lists code it does not import"


def test_every_stage_is_a_bertpipe_module():
    assert set(stage_entry_modules(ROOT / "dvc.yaml")) == {
        "corpus",
        "tokenizer",
        "pretrain_data",
        "pretrain",
        "finetune",
        "evaluate",
    }


def test_deleting_a_dep_line_is_caught(tmp_path):
    text = (ROOT / "dvc.yaml").read_text()
    line = (
        "        - src/bertpipe/data/masking.py\n"  # a pretrain dep (the dynamic masking collator)
    )
    assert text.count(line) == 1  # pretrain's (a foreach stage: its deps are indented deeper)
    broken = tmp_path / "dvc.yaml"
    broken.write_text(text.replace(line, "", 1))
    module, deps = stage_entry_modules(broken)["pretrain"]
    assert uncovered(import_closure(module), deps) == ["bertpipe/data/masking.py"]
    assert code_deps.main([str(broken)]) == 1
    assert code_deps.main([str(ROOT / "dvc.yaml")]) == 0


def test_closure_follows_function_level_and_relative_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "bertpipe"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""docstring only."""\n__version__ = "1"\n')
    (pkg / "sub" / "__init__.py").write_text("from bertpipe.sub import b  # re-export\n")
    (pkg / "a.py").write_text("def f():\n    from .sub import c\n    return c\n")
    (pkg / "sub" / "b.py").write_text("import os\n")
    (pkg / "sub" / "c.py").write_text("from . import b\n")
    (pkg / "lonely.py").write_text("x = 1\n")
    monkeypatch.setattr(code_deps, "SRC", tmp_path)
    code_deps.import_closure.cache_clear()
    try:
        closure = [str(p) for p in import_closure("bertpipe.a")]
        # The inert package __init__ is left out; the one with an import is not.
        assert closure == [
            "bertpipe/a.py",
            "bertpipe/sub/__init__.py",
            "bertpipe/sub/b.py",
            "bertpipe/sub/c.py",
        ]
        before = code_deps.code_identity("bertpipe.a")
        assert code_deps.code_identity("bertpipe.a") == before
        (pkg / "lonely.py").write_text("x = 2\n")  # not imported: no change
        assert code_deps.code_identity("bertpipe.a") == before
        (pkg / "sub" / "b.py").write_text("import sys\n")
        assert code_deps.code_identity("bertpipe.a") != before
    finally:
        code_deps.import_closure.cache_clear()
