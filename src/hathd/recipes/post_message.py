"""Messages for people: a forum post made of upload batches, and user-written output
templates, both rendered by Jinja2's sandbox.

The sandbox (``jinja2.sandbox.ImmutableSandboxedEnvironment``) refuses attribute access to
internals and every mutating method, so a template from the configuration cannot reach the
daemon's objects; undefined names are errors (``StrictUndefined``), found when the template
is compiled or rendered, not as silently empty text. Autoescaping is off: the text is BBCode
or Markdown; the values put into it are made safe for BBCode by :func:`bbcode_text`, and links
pass only as ``http(s)://`` URLs (:func:`~hathd.recipes.output.web_url`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hathd.recipes.output import web_url

__all__ = [
    "DEFAULT_MESSAGE",
    "TemplateError",
    "TemplateSyntaxError",
    "bbcode_text",
    "compile_message",
    "render_message",
]

DEFAULT_MESSAGE = """\
{%- for set in sets %}
{%- if set.name %}[b]{{ set.name }}[/b]
{% endif %}
{%- if set.gallery_url %}[url={{ set.gallery_url }}]{{ set.gallery_url }}[/url]
{% endif %}
{{- set.output }}
{% if not loop.last %}
{% endif %}
{%- endfor %}"""
"""The built-in post: per set, its name in bold, the gallery link, then the images' BBCode."""

_ENV = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
)


def bbcode_text(value: str) -> str:
    """``value`` with the characters that open BBCode tags replaced (``[`` → ``(``, ``]`` →
    ``)``), and control characters removed: a folder name cannot add markup to a post."""
    cleaned = "".join(ch for ch in value if ch.isprintable() or ch == " ")
    return cleaned.replace("[", "(").replace("]", ")")


def compile_message(text: str) -> Template:
    """Compile a message template in the sandbox.

    :raises TemplateSyntaxError: the template does not parse (with its line number).
    """
    return _ENV.from_string(text)


def render_message(template: str, sets: Sequence[Mapping[str, Any]]) -> str:
    """Render ``template`` (empty: :data:`DEFAULT_MESSAGE`) over ``sets``, each a mapping with
    ``name`` (shown as plain text), ``gallery_url``, ``output`` (the set's rendered links) and
    ``links`` (the image URLs); names and links are made safe here.

    :raises TemplateError: a syntax error, an undefined name, or a refused operation.
    """
    safe = [
        {
            "name": bbcode_text(str(s.get("name") or "")),
            "gallery_url": web_url(str(s.get("gallery_url") or "")),
            "output": str(s.get("output") or ""),
            "links": [u for u in (web_url(str(x)) for x in s.get("links", ())) if u],
        }
        for s in sets
    ]
    return compile_message(template or DEFAULT_MESSAGE).render(sets=safe).strip() + "\n"
