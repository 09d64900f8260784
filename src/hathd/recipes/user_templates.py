"""Output templates a user writes: Jinja2 files rendered in a sandbox over one batch.

Files come from ``[recipes] templates_dir`` (every ``NAME….j2`` file there is the output
format ``NAME``: the file name up to its first dot) and ``[recipes] template_files`` (format
name → file). They are read and compiled once, at start-up; a syntax error stops the start
with the file and line (``ConfigError``).

A template renders the whole batch (Jinja2 documentation, "Template Designer Documentation",
https://jinja.palletsprojects.com/en/stable/templates/) from these names only:

- ``items``: the uploaded files in order, each with ``url``, ``thumb`` (the image URL when
  the host gave none), ``delete``, ``filename``, ``index``, ``thumb_width`` and
  ``thumb_height`` (pixels of hathd's local thumbnail; 0 when none was made);
- ``gallery``: ``name`` and ``url`` of the batch's gallery, or ``None``;
- ``batch`` (id) and ``service`` (the image host's id).

Links pass only as ``http(s)://`` URLs (:func:`~hathd.recipes.output.web_url`). Files named
``*.html.j2``, ``*.htm.j2`` or ``*.xml.j2`` are autoescaped.

The environment is Jinja2's ``ImmutableSandboxedEnvironment`` with ``StrictUndefined``:
no attribute of Python internals (``__class__``, ``__globals__`` …), no mutating method, no
unknown name; ``include``/``import``/``extends`` reach only the other configured templates,
never a file (the loader knows nothing else). A failure while rendering is reported as
:class:`OutputTemplateError` naming the template and the line, never raised further than the
summary it was rendering for.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from jinja2 import (
    BaseLoader,
    Environment,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hathd.errors import ConfigError
from hathd.recipes.output import BUILTIN_TEMPLATES, web_url

SUFFIX = ".j2"
_ESCAPED = (".html.j2", ".htm.j2", ".xml.j2")


class OutputTemplateError(ValueError):
    """A user template failed while rendering; the message names the template and line."""


class _Sources(BaseLoader):
    """Serves the configured templates by file name, and nothing else."""

    def __init__(self, sources: Mapping[str, str]) -> None:
        self._sources = dict(sources)

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        if template not in self._sources:
            raise TemplateNotFound(template)
        return self._sources[template], template, lambda: True


def _autoescape(name: str | None) -> bool:
    return bool(name) and str(name).endswith(_ESCAPED)


def _format_name(path: Path) -> str:
    return path.name.split(".", 1)[0]


@attrs.frozen
class UserTemplates:
    """The compiled user templates: ``formats`` maps a format name to its template's file
    name (the key in the sandbox's loader)."""

    env: ImmutableSandboxedEnvironment
    formats: dict[str, str]

    @classmethod
    def empty(cls) -> UserTemplates:
        """No user templates."""
        return cls(ImmutableSandboxedEnvironment(loader=_Sources({})), {})

    @classmethod
    def load(
        cls,
        directory: str | None,
        files: Mapping[str, str],
        reserved: Sequence[str] = (),
    ) -> UserTemplates:
        """Read and compile every template of ``directory`` (``*.j2``) and ``files``.

        :raises ConfigError: a file cannot be read or does not parse (file and line), or a
            format name is taken (a built-in format, one of ``reserved``, or two files).
        """
        found: dict[str, Path] = {}
        problems: list[tuple[str, str]] = []
        if directory:
            folder = Path(directory).expanduser()
            try:
                for path in sorted(folder.iterdir()):
                    if path.name.endswith(SUFFIX) and not path.name.startswith("."):
                        found.setdefault(_format_name(path), path)
            except OSError as exc:
                problems.append(("recipes.templates_dir", f"cannot list {folder}: {exc}"))
        for fmt, file in files.items():
            if fmt in found:
                problems.append((f"recipes.template_files.{fmt}", "format defined twice"))
            found[fmt] = Path(file).expanduser()
        taken = {*BUILTIN_TEMPLATES, *reserved}
        sources: dict[str, str] = {}
        formats: dict[str, str] = {}
        for fmt, path in found.items():
            key = "recipes.template_files" if fmt in files else "recipes.templates_dir"
            if fmt in taken:
                problems.append((key, f"{path.name}: format {fmt!r} is already defined"))
                continue
            try:
                sources[path.name] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append((key, f"cannot read {path}: {exc}"))
                continue
            formats[fmt] = path.name
        env = ImmutableSandboxedEnvironment(
            loader=_Sources(sources),
            undefined=StrictUndefined,
            autoescape=_autoescape,
            keep_trailing_newline=False,
        )
        for fmt, name in formats.items():
            try:
                env.get_template(name)
            except TemplateSyntaxError as exc:
                key = "recipes.template_files" if fmt in files else "recipes.templates_dir"
                where = exc.filename or exc.name or name
                problems.append((key, f"{where} line {exc.lineno}: {exc.message}"))
        if problems:
            raise ConfigError(problems)
        return cls(env, formats)

    def render(self, fmt: str, context: Mapping[str, Any]) -> str:
        """Render the format ``fmt`` over ``context`` (see :func:`batch_context`).

        :raises KeyError: no user template of that name.
        :raises OutputTemplateError: the template failed (an undefined name, a refused
            operation, a missing include…), naming the template and line.
        """
        name = self.formats[fmt]
        try:
            return self.env.get_template(name).render(**context).strip()
        except TemplateError as exc:
            raise OutputTemplateError(_describe(exc, name, self.formats.values())) from None
        except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
            # Python errors raised inside expressions ({{ 1 / 0 }}, {{ items[99] }})
            raise OutputTemplateError(_describe(exc, name, self.formats.values())) from None


def _describe(exc: Exception, name: str, names: Iterable[str]) -> str:
    """``template NAME line N: message`` from the traceback frames Jinja2 rewrote to point
    at template lines (their file name is the template's, one of ``names``)."""
    known = set(names)
    template, line = name, 0
    if isinstance(exc, TemplateSyntaxError) and exc.lineno:
        template, line = exc.filename or exc.name or name, exc.lineno
    else:
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename in known and frame.lineno:
                template, line = frame.filename, frame.lineno
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    where = f"template {template}" + (f" line {line}" if line else "")
    return f"{where}: {type(exc).__name__}: {message}"


def batch_context(
    batch: str,
    service: str,
    items: Sequence[Mapping[str, Any]],
    gallery: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The names a user template sees (plain dicts, lists, strings and numbers), links
    filtered to ``http(s)://`` URLs; items without a usable ``url`` are left out."""
    safe_items = []
    for item in items:
        url = web_url(str(item.get("url", "")))
        if not url:
            continue
        safe_items.append(
            {
                "url": url,
                "thumb": web_url(str(item.get("thumb", ""))) or url,
                "delete": web_url(str(item.get("delete", ""))),
                "filename": str(item.get("filename", "")),
                "index": int(item.get("index", 0) or 0),
                "thumb_width": int(item.get("thumb_width", 0) or 0),
                "thumb_height": int(item.get("thumb_height", 0) or 0),
            }
        )
    safe_gallery = None
    if gallery is not None:
        safe_gallery = {
            "name": str(gallery.get("name", "")),
            "url": web_url(str(gallery.get("gallery_url", ""))),
        }
    return {"items": safe_items, "gallery": safe_gallery, "batch": batch, "service": service}
