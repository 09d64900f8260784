"""Extractors: pull named values out of an HTTP response (pure functions, no I/O).

An extractor is a string ``KIND:ARGUMENT`` (the ``regex:`` prefix is ConniesUploader's; the
other kinds follow ShareX's ``$json:…$``, ``$header:…$`` and ``$responseurl$`` syntax,
ShareX documentation "Custom uploader", https://getsharex.com/docs/custom-uploader):

``json:PATH``
    a JSONPath (jsonpath-ng extended syntax) over the JSON body; ``files.0.url`` dot-indexes
    are accepted as ``files[0].url``. The first match; numbers and booleans become text
    (``true``/``false``).
``css:SELECTOR``
    a CSS selector over the HTML body (parsel). With ``::attr(name)`` or ``::text`` the
    selector decides; otherwise the first element's ``value`` attribute, then ``src``, then
    ``href``, then its text.
``regex:PATTERN``
    a Python regular expression searched in the body text. Named groups all become values;
    the extracted value itself is the group named like the target, else group 1, else the match.
``header:NAME``
    a response header (case-insensitive).
``final_url`` / ``status``
    the URL after redirects; the status code.
``final_url:PATTERN``
    a Python regular expression searched in the URL after redirects (a site that answers a
    form with a redirect to ``…?id=123``); groups as for ``regex:``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cached_property, lru_cache
from typing import Any

import attrs
import parsel
from cssselect import SelectorError
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext.parser import parse as jsonpath_parse

from hathd.recipes.template import render

KINDS = ("json", "css", "regex", "header", "final_url", "status")
_DOT_INDEX = re.compile(r"\.(\d+)(?=\.|$|\[)")


class ExtractorSyntaxError(ValueError):
    """An extractor string does not parse (unknown kind, bad JSONPath, selector or regex)."""


class ExtractionError(LookupError):
    """An extractor found nothing in a response; ``name`` is the value it was to fill."""

    def __init__(self, name: str, spec: str) -> None:
        super().__init__(f"could not extract {name!r} with {spec!r}")
        self.name = name
        self.spec = spec


@lru_cache(maxsize=512)
def _jsonpath(path: str) -> Any:
    """The compiled JSONPath (jsonpath-ng builds its parser tables on every ``parse``)."""
    return jsonpath_parse(path)


@attrs.frozen
class Extractor:
    """A parsed extractor: ``kind`` (one of :data:`KINDS`) and its ``arg``."""

    kind: str
    arg: str


def parse_extractor(spec: str) -> Extractor:
    """Parse and check an extractor string.

    :raises ExtractorSyntaxError: with a message naming what is wrong.
    """
    kind, sep, arg = spec.partition(":")
    if kind in ("final_url", "status") and not arg:
        return Extractor(kind, "")
    if not sep or kind not in KINDS:
        raise ExtractorSyntaxError(
            f"{spec!r}: must start with one of json:, css:, regex:, header:, final_url:, or"
            " be final_url or status"
        )
    if not arg:
        raise ExtractorSyntaxError(f"{spec!r}: empty {kind} argument")
    if kind == "json":
        arg = _DOT_INDEX.sub(r"[\1]", arg)
        try:
            _jsonpath(arg)
        except (
            JsonPathLexerError,
            JsonPathParserError,
            ValueError,
            TypeError,
            AttributeError,
        ) as exc:
            raise ExtractorSyntaxError(f"{spec!r}: bad JSON path: {exc}") from None
    elif kind == "css":
        try:
            parsel.Selector(text="<html></html>", type="html").css(arg)
        except (SelectorError, ValueError) as exc:
            raise ExtractorSyntaxError(f"{spec!r}: bad CSS selector: {exc}") from None
    elif kind in ("regex", "final_url"):
        try:
            re.compile(arg)
        except re.error as exc:
            raise ExtractorSyntaxError(f"{spec!r}: bad regular expression: {exc}") from None
    return Extractor(kind, arg)


class ResponseView:
    """What extractors see of one HTTP response: ``status``, ``headers`` (case-insensitive),
    ``url`` (after redirects) and ``body`` (bytes). The JSON and HTML views are parsed once,
    on first use."""

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        url: str,
        body: bytes,
        encoding: str = "utf-8",
    ) -> None:
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.url = url
        self.body = body
        self.encoding = encoding

    @cached_property
    def text(self) -> str:
        """The body decoded (invalid bytes replaced)."""
        return self.body.decode(self.encoding or "utf-8", errors="replace")

    @cached_property
    def json(self) -> Any:
        """The body as JSON, or ``None`` when it is not JSON."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    @cached_property
    def html(self) -> parsel.Selector:
        """The body as an HTML document."""
        return parsel.Selector(text=self.text or "<html></html>", type="html")


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _css(view: ResponseView, selector: str) -> str | None:
    selected = view.html.css(selector)
    if not selected:
        return None
    if "::" in selector:
        got = selected.get()
        return None if got is None else str(got).strip()
    first = selected[0]
    for attribute in ("value", "src", "href"):
        if attribute in first.attrib:
            return str(first.attrib[attribute])
    text = "".join(str(t) for t in first.css("::text").getall()).strip()
    return text or None


def run_extractor(name: str, ex: Extractor, view: ResponseView) -> dict[str, str]:
    """Apply ``ex`` to ``view``; return ``{name: value}`` plus, for a regex, its named groups.

    :raises ExtractionError: nothing matched.
    """
    found: dict[str, str] = {}
    value: str | None = None
    if ex.kind == "json":
        data = view.json
        if data is not None:
            matches = _jsonpath(ex.arg).find(data)
            value = _as_text(matches[0].value) if matches else None
    elif ex.kind == "css":
        value = _css(view, ex.arg)
    elif ex.kind == "regex" or (ex.kind == "final_url" and ex.arg):
        match = re.search(ex.arg, view.text if ex.kind == "regex" else view.url)
        if match is not None:
            groups = {k: v for k, v in match.groupdict().items() if v is not None}
            found.update(groups)
            if name in groups:
                value = groups[name]
            elif match.re.groups >= 1 and match.group(1) is not None:
                value = match.group(1)
            else:
                value = match.group(0)
    elif ex.kind == "header":
        value = view.headers.get(ex.arg.lower())
    elif ex.kind == "final_url":
        value = view.url
    elif ex.kind == "status":
        value = str(view.status)
    if value is None:
        raise ExtractionError(name, f"{ex.kind}:{ex.arg}" if ex.arg else ex.kind)
    found[name] = value
    return found


def _css_string(value: str) -> str:
    """``value`` safe inside a quoted CSS string (a selector's ``[attr='…']``)."""
    return "".join("\\" + c if c in "\\'\"" else c for c in value).replace("\n", "\\a ")


def bind_extractor(ex: Extractor, values: Mapping[str, str]) -> Extractor:
    """``ex`` with the ``{name}`` placeholders of its argument replaced by ``values``, each
    escaped for the kind: ``regex``/``final_url`` patterns get :func:`re.escape` (the value
    matches literally), ``css`` selectors get a quoted-string escape (write ``'{name}'``
    inside the selector), the other kinds get the value as it is. ``{{``/``}}`` are literal
    braces. Used by result steps, whose page lists many files (a file's own entry found by
    ``{filename}``).

    :raises TemplateError: a placeholder without a value.
    :raises ExtractorSyntaxError: the bound argument does not parse.
    """
    if ex.kind in ("regex", "final_url"):
        escaped = {k: re.escape(v) for k, v in values.items()}
    elif ex.kind == "css":
        escaped = {k: _css_string(v) for k, v in values.items()}
    else:
        escaped = dict(values)
    bound = render(ex.arg, escaped)
    if bound == ex.arg:
        return ex
    return parse_extractor(f"{ex.kind}:{bound}")


def extract_all(specs: Mapping[str, Extractor], view: ResponseView) -> dict[str, str]:
    """Apply every ``name → extractor`` in order; return all extracted values.

    :raises ExtractionError: for the first extractor that finds nothing.
    """
    values: dict[str, str] = {}
    for name, ex in specs.items():
        values.update(run_extractor(name, ex, view))
    return values


def try_extract(name: str, ex: Extractor, view: ResponseView) -> str | None:
    """Like :func:`run_extractor` for one value, ``None`` when nothing matched."""
    try:
        return run_extractor(name, ex, view)[name]
    except ExtractionError:
        return None
