"""Loading YAML configs into strict pydantic models.

Every config model derives from :class:`StrictModel`, so an unknown or mistyped key is an error that
names the key and the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from aloe.errors import AloeError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for config models: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _key(loc: tuple, data: Any) -> str:
    """The dotted key the user wrote for an error at ``loc``: without the tag pydantic inserts for a
    union chosen by ``kind`` (``backbone.timm.image_size`` is ``backbone.image_size``)."""
    parts = []
    for part in loc:
        if isinstance(data, dict) and part not in data and data.get("kind") == part:
            continue
        parts.append(str(part))
        data = data.get(part) if isinstance(data, dict) else None
    return ".".join(parts) or "<root>"


def _describe(error: ValidationError, source: str, data: Any = None) -> str:
    """One line for a validation error: an unknown key first (a typo also makes its key missing),
    else the first error, and how many more there are."""
    errors = error.errors()
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    first = (unknown or errors)[0]
    key = _key(first["loc"], data)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if unknown:
        return f"{source}: unknown key '{key}'{more}"
    return f"{source}: key '{key}': {first['msg']}{more}"


def validate_config(model: type[M], data: dict[str, Any], source: str = "<config>") -> M:
    """Validate a mapping into ``model``; raise :class:`AloeError` naming the key and ``source``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise AloeError(_describe(exc, source, data)) from None


def load_config(model: type[M], path: str | Path, overrides: dict[str, Any] | None = None) -> M:
    """Read a YAML file into ``model``; ``overrides`` (e.g. CLI flags, ``None`` values ignored) win.

    Nested keys may be given with dots: ``{"train.epochs": 3}``.
    """
    path = Path(path)
    if not path.is_file():
        raise AloeError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise AloeError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise AloeError(f"{path}: expected a mapping of keys to values at the top level")
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return validate_config(model, data, str(path))
