"""Output templates: a batch's links as BBCode, HTML, Markdown or plain links.

Each template renders one uploaded image from ``{url}``, ``{thumb}`` (the image URL itself
when the host gave no thumbnail), ``{delete}``, ``{filename}`` and ``{index}``; the lines are
joined with newlines in upload order (ConniesUploader's BBCode/HTML/Markdown output,
README.md). Values are escaped for the target format (HTML entities; Markdown brackets).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from hathd.recipes.template import render

BUILTIN_TEMPLATES: dict[str, str] = {
    "bbcode": "[url={url}][img]{thumb}[/img][/url]",
    "html": '<a href="{url}"><img src="{thumb}" alt="{filename}"></a>',
    "markdown": "[![{filename}]({thumb})]({url})",
    "links": "{url}",
}


def _escape(fmt: str, value: str) -> str:
    if fmt == "html":
        return html.escape(value, quote=True)
    if fmt == "markdown":
        return value.replace("[", "\\[").replace("]", "\\]").replace(")", "%29")
    if fmt == "bbcode":
        return value.replace("[", "%5B").replace("]", "%5D")
    return value


def render_output(
    fmt: str, items: Sequence[Mapping[str, str]], templates: Mapping[str, str] | None = None
) -> str:
    """Render ``items`` (each with ``url``, optional ``thumb``, ``delete``, ``filename``,
    ``index``) through the template named ``fmt``.

    :raises KeyError: no template of that name.
    :raises TemplateError: a custom template uses an unknown placeholder.
    """
    table = {**BUILTIN_TEMPLATES, **(templates or {})}
    template = table[fmt]
    lines = []
    for item in items:
        values = {
            "url": item.get("url", ""),
            "thumb": item.get("thumb") or item.get("url", ""),
            "delete": item.get("delete", ""),
            "filename": item.get("filename", ""),
            "index": str(item.get("index", "")),
        }
        lines.append(render(template, {k: _escape(fmt, v) for k, v in values.items()}))
    return "\n".join(lines)


def formats(templates: Mapping[str, str] | None = None) -> list[str]:
    """The names of every available output format."""
    return sorted({*BUILTIN_TEMPLATES, *(templates or {})})
