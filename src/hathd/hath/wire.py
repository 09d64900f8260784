"""The image server's HTTP/1.x as the official client speaks it (sans-IO).

One request per TLS connection, always ``Connection: close`` (J162 ``HTTPSession.run``;
docs/hath-protocol.md §3.1). This module parses a request head, builds a response head with the
official header order, and parses the RS extras (single ``Range``, ``ETag``; §3.3, §8).

Request rules (§3.1): at most 100 header lines, 10 000 bytes, 1000 chars per line (1.6.5), else
400; the request line must have exactly 3 space-separated parts, else 400; method not GET/HEAD
or version not ``HTTP/…`` gives 405 with ``Allow: GET,HEAD``. An absolute URI is reduced to its
path and a literal lower-case ``%3d`` becomes ``=``.

Response head (§3.1), in order: status line; extra headers; ``Date``; ``Server``;
``Connection: close``; ``Content-Type``; and only when the body length > 0:
``Cache-Control: public, max-age=31536000`` and ``Content-Length``.
"""

from __future__ import annotations

import email.utils
import re

import attrs

from hathd.hath.protocol import SERVER_HEADER

MAX_HEAD_BYTES = 10_000
MAX_HEAD_LINES = 100
MAX_LINE_CHARS = 1000

TEXT_TYPE = "text/html; charset=ISO-8859-1"
"""Default type of text and error bodies (J162 ``Settings.CONTENT_TYPE_DEFAULT``; §3.1)."""
SPEEDTEST_TYPE = "text/html; charset=iso-8859-1"
"""Type of processors with no own type, e.g. the speed test (J162; §3.1)."""
ROBOTS_TYPE = "text/plain; charset=ISO-8859-1"

REASONS = {
    200: "OK",
    206: "Partial Content",
    301: "Moved Permanently",
    304: "Not Modified",
    400: "Bad Request",
    403: "Permission Denied",
    404: "Not Found",
    405: "Method Not Allowed",
    416: "Range Not Satisfiable",
    418: "I'm a teapot",
    501: "Not Implemented",
    502: "Bad Gateway",
}
"""Reason phrases; 403 is the official non-standard one, unknown codes say 500's phrase (§3.1)."""


class HttpError(Exception):
    """A request the server answers with ``status`` (and an error body)."""

    def __init__(self, status: int, extra: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(status)
        self.status = status
        self.extra = extra


@attrs.frozen
class RequestHead:
    """A parsed request: method (upper-case), the path (``%3d`` decoded), the header lines we
    use (lower-case names), and whether it is a HEAD request."""

    method: str
    path: str
    headers: dict[str, str]

    @property
    def head_only(self) -> bool:
        return self.method == "HEAD"

    @property
    def parts(self) -> list[str]:
        """The path split on ``/`` (the first element is ``""``)."""
        return self.path.split("/")


def find_head_end(buf: bytes | bytearray) -> int:
    """Index just past the blank line ending the head (``\\r\\n\\r\\n`` or ``\\n\\n``), or -1."""
    crlf = buf.find(b"\r\n\r\n")
    lf = buf.find(b"\n\n")
    ends = [i + 4 for i in (crlf,) if i >= 0] + [i + 2 for i in (lf,) if i >= 0]
    return min(ends) if ends else -1


def parse_head(raw: bytes) -> RequestHead:
    """Parse a complete request head (everything before the blank line).

    :raises HttpError: 400 for size limits or a malformed request line; 405 for another
        method or a non-HTTP version.
    """
    if len(raw) > MAX_HEAD_BYTES:
        raise HttpError(400)
    lines = raw.decode("latin-1").replace("\r\n", "\n").split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines or len(lines) > MAX_HEAD_LINES or any(len(x) > MAX_LINE_CHARS for x in lines):
        raise HttpError(400)
    parts = lines[0].split(" ")
    if len(parts) != 3 or not all(parts):
        raise HttpError(400)
    method, target, version = parts
    if method.upper() not in ("GET", "HEAD") or not version.startswith("HTTP/"):
        raise HttpError(405, (("Allow", "GET,HEAD"),))
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    m = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*(/.*)?$", target)
    if m:
        target = m.group(1) or "/"
    path = target.split("?", 1)[0].replace("%3d", "=")
    return RequestHead(method.upper(), path, headers)


_date_cache: tuple[int, str] = (-1, "")


def http_date(now: float) -> str:
    """RFC 1123 date in GMT (``Date`` header). The text has whole seconds, so the last one
    is kept and reused within the same second."""
    global _date_cache
    second = int(now)
    if _date_cache[0] != second:
        _date_cache = (second, email.utils.formatdate(second, usegmt=True))
    return _date_cache[1]


def response_head(
    status: int,
    *,
    content_type: str,
    length: int,
    now: float,
    extra: tuple[tuple[str, str], ...] = (),
    immutable: bool = False,
) -> bytes:
    """The response head bytes, official header order (§3.1). ``length`` is the body length in
    bytes (the would-be length for HEAD); 0 omits ``Cache-Control`` and ``Content-Length``.
    ``immutable`` adds RS's ``immutable`` to ``Cache-Control`` for images (§3.3)."""
    reason = REASONS.get(status, "Internal Server Error")
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines.extend(f"{k}: {v}" for k, v in extra)
    lines.append(f"Date: {http_date(now)}")
    lines.append(f"Server: {SERVER_HEADER}")
    lines.append("Connection: close")
    lines.append(f"Content-Type: {content_type}")
    if length > 0:
        cache = "public, max-age=31536000" + (", immutable" if immutable else "")
        lines.append(f"Cache-Control: {cache}")
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def error_body(status: int) -> bytes:
    """``An error has occurred. (<code>)`` (J162; §3.1)."""
    return f"An error has occurred. ({status})".encode("ascii")


def error_response(
    status: int, now: float, extra: tuple[tuple[str, str], ...] = (), *, head_only: bool = False
) -> bytes:
    """A whole error response (head + body unless ``head_only``)."""
    body = error_body(status)
    head = response_head(status, content_type=TEXT_TYPE, length=len(body), now=now, extra=extra)
    return head if head_only else head + body


def etag_for(sha1: str) -> str:
    """RS's ETag: the first 8 hex of the file hash, quoted (RS ``route/cache.rs``; §3.3)."""
    return f'"{sha1[:8]}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` value lists ``etag`` (or is ``*``); weak tags compare equal."""
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


class RangeNotSatisfiable(Exception):
    """The single byte range lies outside the file."""


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """A single ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range as inclusive ``(first, last)``;
    ``None`` to serve the whole file (absent, malformed or multi-range: ignored, RFC 9110 §14.2).

    :raises RangeNotSatisfiable: a well-formed range with no byte inside the file (416).
    """
    if not value:
        return None
    unit, sep, spec = value.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    m = re.fullmatch(r"\s*(\d*)-(\d*)\s*", spec)
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):
        n = int(m.group(2))
        if n == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - n), size - 1
    first = int(m.group(1))
    if first >= size:
        raise RangeNotSatisfiable
    last = int(m.group(2)) if m.group(2) else size - 1
    if last < first:
        return None
    return first, min(last, size - 1)
