"""A fake anime provider and its hosters on one real HTTP/1.1 server (raw Trio sockets).

It serves what the episode job meets on the web: the provider's ``/redirect/<id>`` answers
(``302`` to a hoster's embed page), hoster embed pages (HTML built by
:mod:`anime.hoster_fixtures` after the public pages' structure), Doodstream's ``pass_md5``
text, Streamtape's ``get_video`` redirect, and media files: MP4 bytes with RFC 9110 ranges
(``Range: bytes=N-``, ``If-Range`` against a strong ``ETag``, ``206`` with ``Content-Range``)
and HLS playlists with their segments. Hostile routes send raw bytes verbatim (a
``Content-Length`` of 2 GiB on a tiny body, then the connection is closed).

Framing follows RFC 9112 with one request per connection (``Connection: close``). Every
request is logged in :attr:`FakeAnimeSite.requests` as ``(method, target, headers)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from urllib.parse import parse_qs, urlsplit

import attrs
import trio

_REASONS = {
    200: "OK",
    206: "Partial Content",
    302: "Found",
    404: "Not Found",
    416: "Range Not Satisfiable",
}
CHUNK = 1 << 20


@attrs.define
class Route:
    """What one path answers: ``status``, ``headers``, ``body``; ``raw`` bytes sent verbatim
    instead; ``ranges`` for media files; ``query`` a required query parameter and value."""

    status: int = 200
    headers: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    raw: bytes | None = None
    ranges: bool = False
    query: tuple[str, str] | None = None
    pace: float | None = None
    piece: int = 1


@attrs.define
class FakeAnimeSite:
    """The server's routes (exact paths, then the longest matching prefix) and its log."""

    port: int = 0
    routes: dict[str, Route] = attrs.field(factory=dict)
    prefixes: dict[str, Route] = attrs.field(factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = attrs.field(factory=list)
    hook: Callable[[str], None] | None = None

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def page(self, path: str, html: str) -> None:
        """Serve ``html`` as ``text/html``."""
        self.routes[path] = Route(
            headers={"Content-Type": "text/html; charset=utf-8"}, body=html.encode()
        )

    def text(self, path: str, text: str, content_type: str = "text/plain") -> None:
        """Serve ``text`` with ``content_type``."""
        self.routes[path] = Route(headers={"Content-Type": content_type}, body=text.encode())

    def redirect(self, path: str, location: str) -> None:
        """Answer ``302 Found`` with ``Location: location``."""
        self.routes[path] = Route(status=302, headers={"Location": location})

    def media(
        self,
        path: str,
        data: bytes,
        content_type: str = "video/mp4",
        *,
        prefix: bool = False,
        query: tuple[str, str] | None = None,
    ) -> None:
        """Serve ``data`` with ranges and a strong ETag (under every path starting with
        ``path`` when ``prefix``; only with query parameter ``query`` when given, else 404)."""
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        route = Route(
            headers={"Content-Type": content_type, "ETag": etag, "Accept-Ranges": "bytes"},
            body=data,
            ranges=True,
            query=query,
        )
        (self.prefixes if prefix else self.routes)[path] = route

    def trickle(self, path: str, html: str, pace: float) -> None:
        """Serve ``html`` as ``text/html``, one byte every ``pace`` seconds."""
        self.routes[path] = Route(
            headers={"Content-Type": "text/html"}, body=html.encode(), pace=pace
        )

    def slow_media(self, path: str, data: bytes, pace: float, piece: int = 4096) -> None:
        """Like :meth:`media`, the body sent ``piece`` bytes every ``pace`` seconds."""
        self.media(path, data)
        self.routes[path].pace = pace
        self.routes[path].piece = piece

    def raw(self, path: str, data: bytes) -> None:
        """Send ``data`` verbatim as the whole answer, then close."""
        self.routes[path] = Route(raw=data)

    def count(self, path: str) -> int:
        """Requests whose path (without query) is ``path``."""
        return sum(1 for _, target, _ in self.requests if urlsplit(target).path == path)

    def _find(self, path: str) -> Route | None:
        found = self.routes.get(path)
        if found is not None:
            return found
        best = ""
        for prefix in self.prefixes:
            if path.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return self.prefixes.get(best) if best else None

    async def _serve(self, stream: trio.SocketStream) -> None:
        try:
            head = bytearray()
            while b"\r\n\r\n" not in head:
                data = await stream.receive_some(65536)
                if not data:
                    return
                head += data
                if len(head) > 65536:
                    return
            lines = bytes(head).split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.requests.append((method, target, headers))
            if self.hook is not None:
                self.hook(target)
            await self._answer(stream, method, target, headers)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
            pass
        finally:
            await stream.aclose()

    async def _answer(
        self, stream: trio.SocketStream, method: str, target: str, headers: dict[str, str]
    ) -> None:
        parts = urlsplit(target)
        route = self._find(parts.path)
        if route is not None and route.query is not None:
            key, value = route.query
            if parse_qs(parts.query).get(key) != [value]:
                route = None
        if route is None:
            await _send(stream, 404, {"Content-Type": "text/plain"}, b"not found\n", method)
            return
        if route.raw is not None:
            await stream.send_all(route.raw)
            return
        body = route.body
        out = dict(route.headers)
        status = route.status
        wanted = headers.get("range", "")
        if route.ranges and wanted.startswith("bytes=") and wanted.endswith("-"):
            if_range = headers.get("if-range")
            if if_range is None or if_range == out.get("ETag"):
                start_text = wanted[6:-1]
                start = int(start_text) if start_text.isdigit() else -1
                if 0 <= start < len(body):
                    out["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
                    body = body[start:]
                    status = 206
                else:
                    out["Content-Range"] = f"bytes */{len(body)}"
                    await _send(stream, 416, out, b"", method)
                    return
        if route.pace is not None:
            await _send(stream, status, out, b"", "HEAD", length=len(body))
            for at in range(0, len(body), route.piece):
                await stream.send_all(body[at : at + route.piece])
                await trio.sleep(route.pace)
            return
        await _send(stream, status, out, body, method)


async def _send(
    stream: trio.SocketStream,
    status: int,
    headers: dict[str, str],
    body: bytes,
    method: str,
    *,
    length: int | None = None,
) -> None:
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}"]
    size = len(body) if length is None else length
    for name, value in {**headers, "Content-Length": str(size), "Connection": "close"}.items():
        head.append(f"{name}: {value}")
    await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    if method == "HEAD":
        return
    view = memoryview(body)
    for at in range(0, len(body), CHUNK):
        await stream.send_all(view[at : at + CHUNK])


@asynccontextmanager
async def open_fake_anime_site() -> AsyncIterator[FakeAnimeSite]:
    """A :class:`FakeAnimeSite` listening on a free port of 127.0.0.1 until the block ends."""
    site = FakeAnimeSite()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, site._serve, 0, host="127.0.0.1"))
        site.port = listeners[0].socket.getsockname()[1]
        yield site
        nursery.cancel_scope.cancel()
