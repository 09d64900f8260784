"""A fake Jellyfin and a fake Plex on real HTTP servers (hypercorn, 127.0.0.1, free ports),
speaking the documented refresh endpoints and recording what they receive.

Jellyfin (https://api.jellyfin.org, ``PostUpdatedMedia``): ``POST /Library/Media/Updated``
with ``{"Updates": [{"Path", "UpdateType"}]}`` and ``Authorization: MediaBrowser
Token="<key>"`` (or the older ``X-Emby-Token`` header) → ``204``; a wrong key → ``401``.

Plex (https://www.plexopedia.com/plex-media-server/api/server/libraries/ and
…/api/library/scan-partial/): ``GET /library/sections`` → the XML ``MediaContainer`` of
``Directory`` elements with their ``Location`` paths; ``GET /library/sections/{key}/refresh
?path=<folder>`` → ``200``; ``X-Plex-Token`` as a header or query parameter, else ``401``.

``fail`` makes the next that many refresh calls answer ``500``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs
from xml.sax.saxutils import quoteattr

import attrs

from fakes.asgi import Receive, Scope, Send, lifespan, read_body, serving


@attrs.define
class Seen:
    """One request: method, path, query (parsed), headers (lower-case names), body."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@attrs.define(eq=False)
class FakeMediaServer:
    """Base: request recording, the answer helpers and the refresh log."""

    token: str = "secret-token"
    fail: int = 0
    port: int = 0
    seen: list[Seen] = attrs.field(factory=list)
    refreshed: list[str] = attrs.field(factory=list)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await lifespan(scope, receive, send):
            return
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        seen = Seen(
            scope["method"],
            scope["path"],
            parse_qs(scope["query_string"].decode()),
            headers,
            body,
        )
        self.seen.append(seen)
        status, ctype, payload = self.answer(seen)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", ctype.encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    def answer(self, req: Seen) -> tuple[int, str, bytes]:
        raise NotImplementedError

    def _failing(self) -> bool:
        if self.fail > 0:
            self.fail -= 1
            return True
        return False


@attrs.define(eq=False)
class FakeJellyfin(FakeMediaServer):
    """Jellyfin's ``POST /Library/Media/Updated``."""

    def _token_of(self, req: Seen) -> str | None:
        auth = req.headers.get("authorization", "")
        m = re.search(r'Token="([^"]*)"', auth)
        if m:
            return m.group(1)
        return req.headers.get("x-emby-token")

    def answer(self, req: Seen) -> tuple[int, str, bytes]:
        if req.method != "POST" or req.path != "/Library/Media/Updated":
            return 404, "text/plain", b"not found"
        if self._token_of(req) != self.token:
            return 401, "text/plain", b"unauthorized"
        if self._failing():
            return 500, "text/plain", b"boom"
        data = json.loads(req.body)
        for update in data["Updates"]:
            assert update["UpdateType"] in ("Created", "Modified", "Deleted")
            self.refreshed.append(update["Path"])
        return 204, "text/plain", b""


@attrs.define(eq=False)
class FakePlex(FakeMediaServer):
    """Plex's ``/library/sections`` and partial scan."""

    sections: dict[str, list[str]] = attrs.field(factory=dict)
    """Library key → its folders (``Location`` paths)."""
    scanned: list[tuple[str, str]] = attrs.field(factory=list)
    """``(section key, path)`` of each partial scan."""

    def answer(self, req: Seen) -> tuple[int, str, bytes]:
        token = req.headers.get("x-plex-token") or (req.query.get("X-Plex-Token") or [""])[0]
        if token != self.token:
            return 401, "text/html", b"<html><body>401 Unauthorized</body></html>"
        if req.method != "GET":
            return 405, "text/plain", b""
        if req.path == "/library/sections":
            dirs = "".join(
                f'<Directory key={quoteattr(key)} type="show" title={quoteattr("L" + key)}>'
                + "".join(
                    f"<Location id={quoteattr(str(i))} path={quoteattr(p)}/>"
                    for i, p in enumerate(paths)
                )
                + "</Directory>"
                for key, paths in self.sections.items()
            )
            xml = f'<?xml version="1.0" encoding="UTF-8"?><MediaContainer size="{len(self.sections)}">{dirs}</MediaContainer>'
            return 200, "text/xml", xml.encode()
        m = re.fullmatch(r"/library/sections/([^/]+)/refresh", req.path)
        if m and m.group(1) in self.sections:
            if self._failing():
                return 500, "text/plain", b"boom"
            path = (req.query.get("path") or [""])[0]
            self.scanned.append((m.group(1), path))
            self.refreshed.append(path)
            return 200, "text/plain", b""
        return 404, "text/plain", b"not found"


@asynccontextmanager
async def open_fake_media_server[S: FakeMediaServer](server: S) -> AsyncIterator[S]:
    """Serve ``server`` on 127.0.0.1 (free port) for the ``with`` block."""
    async with serving(server) as port:
        server.port = port
        yield server
