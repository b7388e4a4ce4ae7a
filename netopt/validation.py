"""Turning YAML files into frozen pydantic models, with one error line per bad field.

Used by the daemon config and by lab world profiles alike, so both speak the same way:
``pops[1].address: not an IP address``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from netopt.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _message(err: Any) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid"))
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key missing"
    # pydantic prefixes messages from our validators with "Value error, "
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg


def format_validation_error(exc: ValidationError) -> list[str]:
    """One ``path: message`` line per problem, in the order pydantic found them."""
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err.get("loc", ()) if not str(p).startswith("function-"))
        lines.append(f"{_path(loc)}: {_message(err)}")
    return lines


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; a missing file or a syntax error is a `ConfigError` naming it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(p), [f"{where}YAML syntax error: {problem}"]) from None
    return {} if data is None else data


def parse_model(model: type[M], data: Any, source: str) -> M:
    """Validate `data` into `model`; every problem becomes one line of a `ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): expected a mapping of keys"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc)) from None


def load_model(model: type[M], path: str | Path) -> M:
    """Load and validate a YAML file into `model`."""
    return parse_model(model, load_yaml(path), str(path))
