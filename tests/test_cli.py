"""The ``bertpipe`` command: --help everywhere, clear errors."""

from __future__ import annotations

import pytest

from bertpipe.cli import build_parser, main

SUBCOMMANDS = [
    "run",
    "preset",
    "params",
    "datasets",
    "show-data",
    "fill-mask",
    "predict",
    "attention",
    "finetune",
    "plots",
]


def test_every_subcommand_is_documented():
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices
    assert sorted(choices) == sorted(SUBCOMMANDS)


@pytest.mark.parametrize("argv", [[], *[[c] for c in SUBCOMMANDS]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: bertpipe")


def test_params_errors_are_reported_not_raised(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text("tokenizer: {vocab_size: many}\n")
    assert main(["params", "--params", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "tokenizer.vocab_size" in err and str(bad) in err


def test_datasets_listing_shows_mirror_status(mirror, capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "wikitext-103" in out and "[not in mirror]" in out and "[in mirror: 4 file(s)]" in out


def test_preset_writes_params(tmp_path, capsys):
    assert (
        main(
            [
                "preset",
                "tiny",
                "--params",
                str(tmp_path / "p.yaml"),
                "--set",
                "pretrain_data.seed=7",
            ]
        )
        == 0
    )
    assert "seed: 7" in (tmp_path / "p.yaml").read_text()
