"""Helpers for the attrs configuration classes of every section.

Each section is an ``@attrs.frozen`` class whose every field has a default, so an empty TOML
file is valid. Validators from this module raise :class:`FieldError`, which carries the field
name, so ``hathd config check`` can report a full key path such as ``engine.workers``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from hathd.errors import ConfigError


class FieldError(ValueError):
    """A value failed its validator; ``field`` is the attrs field name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def in_range(
    lo: float | None = None, hi: float | None = None
) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator that accepts ``lo <= value <= hi`` (either bound may be ``None``)."""

    def check(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if lo is not None and value < lo:
            raise FieldError(attr.name, f"must be >= {lo}, got {value!r}")
        if hi is not None and value > hi:
            raise FieldError(attr.name, f"must be <= {hi}, got {value!r}")

    return check


def one_of(*choices: str) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator that accepts only the given strings."""

    def check(_inst: Any, attr: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            raise FieldError(attr.name, f"must be one of {', '.join(choices)}; got {value!r}")

    return check


def secret(default: Any = None) -> Any:
    """An attrs field holding a secret: ``hathd config show`` prints it as ``***``."""
    return attrs.field(default=default, metadata={"secret": True})


def read_secret(value: str | None, path: str, key: str) -> str | None:
    """``value`` if set, else the first line of the file at ``path`` (surrounding whitespace
    stripped), as every ``*_file`` key of hathd is read; ``None`` when neither.

    :raises ConfigError: the file cannot be read (the error names ``key``).
    """
    if value:
        return value
    if not path:
        return None
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([(key, f"cannot read {path}: {exc}")]) from None
    lines = text.splitlines()
    return lines[0].strip() if lines else ""
