"""The one strict reader of admin API request bodies.

Every route that takes a body reads it with :func:`read_json` (or :func:`read_object`), so
malformed input is refused in one place with ``400 {"error": "<field>: <reason>", "field"}``
(the admin app's handler of :class:`MalformedBody`) before any route logic or the store sees it.

Strict JSON (RFC 8259):

- not JSON, or nested deeper than :data:`MAX_DEPTH` → field ``body``;
- ``NaN``/``Infinity`` or a number too large for a float (RFC 8259 §6 leaves them out) → the
  path of the value (``timeout``, ``jobs[0].priority``; a top-level list is named ``jobs``);
- a string or key holding a lone surrogate (``"\\ud800"``: valid JSON escapes, but not
  Unicode text, so not storable as UTF-8; RFC 8259 §8.2) → the path of the value;
- a body larger than the app's ``MAX_CONTENT_LENGTH`` → ``413`` (quart).
"""

from __future__ import annotations

import json
import math
from typing import Any

from quart import g, request

from hathd.errors import InvalidInput

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects a body may have."""


class MalformedBody(InvalidInput):
    """A request body that is not acceptable; ``field`` names the offending part (``body``,
    ``jobs[1].timeout``) and the message reads ``"<field>: <reason>"``."""


class _NonFinite:
    """Stands for a ``NaN``/``Infinity`` literal (or a number beyond a float) while parsing."""


_NON_FINITE = _NonFinite()


def _parse_float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NON_FINITE


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _first_defect(value: Any, root: str) -> tuple[str, str] | None:
    """``(path, reason)`` of the first non-finite number, lone surrogate or too deep nesting."""
    stack: list[tuple[Any, str, int]] = [(value, root, 0)]
    while stack:
        node, path, depth = stack.pop()
        where = path or "body"
        if node is _NON_FINITE:
            return where, "must be a finite number (NaN and Infinity are not JSON)"
        if isinstance(node, str) and not _is_text(node):
            return where, "holds a lone surrogate (not Unicode text)"
        if isinstance(node, dict | list) and depth >= MAX_DEPTH:
            return "body", f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(node, dict):
            for key in node:
                if not _is_text(key):
                    return where, "has a key holding a lone surrogate (not Unicode text)"
            items = [(v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in node.items()]
            stack.extend(reversed(items))
        elif isinstance(node, list):
            stack.extend(reversed([(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node)]))
    return None


def parse_json(data: str | bytes) -> Any:
    """``data`` as strict JSON (see the module docstring).

    :raises MalformedBody: naming the offending field.
    """
    try:
        body = json.loads(data, parse_constant=lambda _name: _NON_FINITE, parse_float=_parse_float)
    except (ValueError, RecursionError):
        raise MalformedBody("body", "not valid JSON") from None
    defect = _first_defect(body, "jobs" if isinstance(body, list) else "")
    if defect is not None:
        raise MalformedBody(*defect)
    return body


BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""The methods whose body :func:`check_body` reads."""


FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
"""Content types of HTML form bodies, which :func:`check_body` leaves to the form parser."""


async def check_body() -> None:
    """Read the current request's body (``POST``/``PUT``/``PATCH``/``DELETE``) and check that
    it is empty or strict JSON; the data stays cached for the route's :func:`read_json`.
    Called by the admin app before every route, so a route that ignores its body still refuses
    a malformed one and never leaves it unread on the connection. An HTML form's body
    (``application/x-www-form-urlencoded`` or ``multipart/form-data``: the web pages' forms)
    is read but left to the form parser.

    :raises MalformedBody: see :func:`parse_json`.
    """
    if request.method not in BODY_METHODS:
        return
    data = await request.get_data(cache=True)
    if request.mimetype in FORM_TYPES:
        return
    if data and data.strip():
        g.hathd_body = parse_json(data)  # parsed once: read_json takes it from here


async def read_json(*, required: bool = True) -> Any:
    """The current request's body as strict JSON; ``None`` for an empty body when not
    ``required``.

    :raises MalformedBody: an empty body when ``required`` (``body``), or see
        :func:`parse_json`.
    """
    if "hathd_body" in g:
        return g.hathd_body
    data = await request.get_data()
    if not data or not data.strip():
        if required:
            raise MalformedBody("body", "a JSON body is required")
        return None
    return parse_json(data)


async def read_object(*, required: bool = True) -> dict[str, Any]:
    """The current request's body as a JSON object (``{}`` for an empty body when not
    ``required``).

    :raises MalformedBody: not an object (``body``), or see :func:`read_json`.
    """
    body = await read_json(required=required)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise MalformedBody("body", "must be a JSON object")
    return body
