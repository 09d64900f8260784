"""Output templates: a batch's links as BBCode, HTML, Markdown or plain links.

Each template renders one uploaded image from ``{url}``, ``{thumb}`` (the image URL itself
when the host gave no thumbnail), ``{delete}``, ``{filename}`` and ``{index}``; the lines are
joined with newlines in upload order (ConniesUploader's BBCode/HTML/Markdown output,
as its README describes it; docs/recipes.md). Values are escaped for the target format (HTML
entities; Markdown brackets).

The links come from a remote host's reply, so only ``http://`` and ``https://`` URLs are
used (:func:`web_url`): a ``javascript:`` or ``data:`` link from a hostile host never reaches
the HTML or BBCode a user pastes. An item without a usable ``url`` is left out; an unusable
``thumb`` falls back to the ``url``, an unusable ``delete`` becomes empty.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence

from hathd.recipes.template import render

BUILTIN_TEMPLATES: dict[str, str] = {
    "bbcode": "[url={url}][img]{thumb}[/img][/url]",
    "html": '<a href="{url}"><img src="{thumb}" alt="{filename}"></a>',
    "markdown": "[![{filename}]({thumb})]({url})",
    "links": "{url}",
}


_WEB_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f]+", re.IGNORECASE)


def web_url(value: str) -> str:
    """``value`` when it is an absolute ``http(s)://`` URL without whitespace or control
    characters, else ``""``."""
    return value if _WEB_URL.fullmatch(value) else ""


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
    ``index``) through the template named ``fmt``, one line per item with an http(s) ``url``
    (see the module docstring).

    :raises KeyError: no template of that name.
    :raises TemplateError: a custom template uses an unknown placeholder.
    """
    table = {**BUILTIN_TEMPLATES, **(templates or {})}
    template = table[fmt]
    lines = []
    for item in items:
        url = web_url(item.get("url", ""))
        if not url:
            continue
        values = {
            "url": url,
            "thumb": web_url(item.get("thumb", "")) or url,
            "delete": web_url(item.get("delete", "")),
            "filename": item.get("filename", ""),
            "index": str(item.get("index", "")),
        }
        lines.append(render(template, {k: _escape(fmt, v) for k, v in values.items()}))
    return "\n".join(lines)


GALLERY_TEMPLATES: dict[str, str] = {
    "bbcode": "[url={url}]{name}[/url]",
    "html": '<a href="{url}">{name}</a>',
    "markdown": "[{name}]({url})",
    "links": "{url}",
}
"""The gallery's link in each built-in format (the line printed before its images)."""


def render_gallery(fmt: str, name: str, url: str) -> str:
    """The link to a gallery named ``name`` in the built-in format ``fmt``; ``""`` when
    ``url`` is not an ``http(s)://`` URL or ``fmt`` is not built in. The name is made safe
    for the format (BBCode brackets become parentheses, HTML entities, Markdown escapes)."""
    link = web_url(url)
    if not link or fmt not in GALLERY_TEMPLATES:
        return ""
    shown_name = "".join(ch for ch in name if ch.isprintable()) or link
    if fmt == "bbcode":
        shown_name = shown_name.replace("[", "(").replace("]", ")")
    else:
        shown_name = _escape(fmt, shown_name)
    return render(GALLERY_TEMPLATES[fmt], {"url": _escape(fmt, link), "name": shown_name})


def formats(templates: Mapping[str, str] | None = None) -> list[str]:
    """The names of every available output format."""
    return sorted({*BUILTIN_TEMPLATES, *(templates or {})})
