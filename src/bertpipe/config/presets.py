"""Scale presets: ``params.yaml`` written from the defaults plus one overlay file.

Owns ``bertpipe preset NAME``: the defaults of ``config/schema.py`` (the demo
scale), the overlay ``config/overlays/NAME.yaml`` (an overlay may start from another
with ``extends: NAME``), ``section.key=value`` overrides, and the rendering of
``params.yaml`` with every key's docstring as a comment, so DVC sees and locks the
actual values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from bertpipe.config.loading import ConfigError, load_params, parse_yaml, validate
from bertpipe.config.schema import PRESETS, Params


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """``section.key=value`` (value parsed as YAML) -> (path, value)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected section.key=value")
    key, raw = item.split("=", 1)
    return key.split("."), parse_yaml(raw)


def overlay(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The overlay of preset ``name``, with the one it ``extends`` applied first."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    if name in seen:
        raise ConfigError(f"preset {name}: 'extends' loops through {' -> '.join((*seen, name))}")
    text = resources.files("bertpipe.config.overlays").joinpath(f"{name}.yaml").read_text()
    data = parse_yaml(text) or {}
    parent = data.pop("extends", None)
    return deep_merge(overlay(parent, (*seen, name)), data) if parent else data


def preset_values(name: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Defaults + the preset's overlay + ``key=value`` overrides, validated."""
    data = deep_merge(Params().model_dump(mode="json"), overlay(name))
    data["preset"] = name
    for item in overrides:
        keys, value = parse_override(item)
        cur = data
        for k in keys[:-1]:
            cur = cur.setdefault(k, {})
        cur[keys[-1]] = value
        data["preset"] = "custom" if overrides else name
    validate(data, origin=f"preset {name}")
    return data


def render_params(data: dict[str, Any]) -> str:
    """params.yaml text: every key preceded by its field docstring as a comment."""
    out = [
        "# bertpipe run values: one section per DVC stage.",
        f"# Regenerate from a scale preset with `bertpipe preset {'|'.join(PRESETS)}`;",
        "# edit values freely, or vary them with `dvc exp run -S section.key=value`.",
    ]

    def emit(model: type[BaseModel], values: dict[str, Any], indent: int) -> None:
        pad = " " * indent
        for key, field in model.model_fields.items():
            if key not in values:
                continue
            value = values[key]
            if field.description:
                out.append(f"{pad}# {field.description}")
            ann = field.annotation
            sub = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
            if sub is not None and isinstance(value, dict):
                out.append(f"{pad}{key}:")
                emit(sub, value, indent + 2)
            elif isinstance(value, (list, dict)) and value:
                item_type = next(
                    (
                        a
                        for a in getattr(ann, "__args__", ())
                        if isinstance(a, type) and issubclass(a, BaseModel)
                    ),
                    None,
                )
                if item_type is not None and isinstance(value, list):
                    # List items (corpus sources) show only what differs from the defaults.
                    value = [
                        item_type.model_validate(v).model_dump(mode="json", exclude_defaults=True)
                        for v in value
                    ]
                if isinstance(value, dict):
                    # Maps of sections (task_hparams, user_tasks) show only the keys set.
                    value = {
                        k: {kk: vv for kk, vv in v.items() if vv is not None}
                        if isinstance(v, dict)
                        else v
                        for k, v in value.items()
                    }
                dumped = yaml.safe_dump(value, default_flow_style=False, sort_keys=False)
                out.append(f"{pad}{key}:")
                out.extend(f"{pad}  {line}" for line in dumped.rstrip().splitlines())
            else:
                flow = yaml.safe_dump(value, default_flow_style=True).strip()
                flow = flow.removesuffix("\n...").removesuffix("...").strip()
                out.append(f"{pad}{key}: {flow}")

    emit(Params, data, 0)
    # Blank line before each top-level section for readability.
    text = "\n".join(out) + "\n"
    return re.sub(r"\n(# (Stage|The encoder|MLflow) )", r"\n\n\1", text)


def write_preset(
    name: str, path: str | Path = "params.yaml", overrides: Sequence[str] = ()
) -> Path:
    path = Path(path)
    text = render_params(preset_values(name, overrides))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    # Round-trip check: what we wrote is what loads.
    load_params(path)
    return path
