"""``{placeholder}`` templates: a safe formatter that substitutes known names only.

Syntax (after ConniesUploader's ``{field}`` placeholders, its architecture notes v2.4): ``{name}``
where ``name`` matches ``[A-Za-z_][A-Za-z0-9_]*``; ``{{`` and ``}}`` stand for literal braces.
Nothing else is interpreted: no attribute access, indexing, conversions or format specs (unlike
:meth:`str.format`, which could reach object internals), so a recipe cannot read anything but
the values it is given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")


class TemplateError(ValueError):
    """A template is malformed or names a value that does not exist.

    ``names`` lists the unknown placeholders (empty for a syntax error).
    """

    def __init__(self, message: str, names: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.names = names


def placeholders(template: str) -> list[str]:
    """The placeholder names of ``template`` in order of appearance.

    :raises TemplateError: a lone ``{`` or ``}`` or a placeholder that is not a plain name.
    """
    names: list[str] = []
    for match in _TOKEN.finditer(template):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        if match.group(1) is None:
            raise TemplateError(
                f"stray {token!r} at offset {match.start()} (write {token * 2} for a literal"
                " brace; placeholders are {name})"
            )
        names.append(match.group(1))
    return names


def render(template: str, values: Mapping[str, str]) -> str:
    """Substitute every ``{name}`` of ``template`` from ``values``.

    :raises TemplateError: a syntax error, or names missing from ``values`` (all listed).
    """
    missing = [n for n in placeholders(template) if n not in values]
    if missing:
        unique = tuple(dict.fromkeys(missing))
        raise TemplateError(
            "unknown placeholder " + ", ".join("{" + n + "}" for n in unique), unique
        )

    def sub(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return values[match.group(1)]

    return _TOKEN.sub(sub, template)
