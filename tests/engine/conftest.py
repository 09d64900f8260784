"""Fixtures of the engine tests: an in-process engine on a real store, with short retry waits."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from hathd.config import Config
from hathd.engine import Engine, running_engine
from hathd.engine.config import EngineConfig, LaneConfig, RetryPresetConfig
from hathd.runtime import Runtime, open_runtime

FAST_RETRY = RetryPresetConfig(delays=[0.05, 0.05], jitter=0.0, final_wait=0.1)

EngineFactory = Callable[..., AbstractAsyncContextManager[tuple[Runtime, Engine]]]


def engine_config(**overrides: Any) -> Config:
    """A :class:`Config` whose engine retries fast (0.05 s, 0.05 s, final after 0.1 s); a
    ``retry`` override adds presets to (or replaces) that ``default``."""
    fields: dict[str, Any] = {"workers": 4}
    fields.update(overrides)
    fields["retry"] = {"default": FAST_RETRY, **overrides.get("retry", {})}
    if "lanes" in fields:
        fields["lanes"] = {k: LaneConfig(**v) for k, v in fields["lanes"].items()}
    return Config(engine=EngineConfig(**fields))


@pytest.fixture
def make_engine(tmp_path: Path) -> EngineFactory:
    """``async with make_engine(**engine_fields) as (rt, engine)``; the state directory is
    ``tmp_path / "state"`` (reused across calls, so a second call is a restart)."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[tuple[Runtime, Engine]]:
        async with (
            open_runtime(engine_config(**overrides), tmp_path / "state") as rt,
            running_engine(rt) as engine,
        ):
            yield rt, engine

    return factory


BODY = os.urandom(3 * 1024 * 1024 + 17)
OTHER_BODY = os.urandom(2 * 1024 * 1024 + 5)
"""A second body: what ``localhost`` serves when asked by that name, or a file's new version."""


def small_body(path: str) -> bytes:
    """The body served for ``/small/...`` paths: a few hundred bytes that depend on the path."""
    return (f"{path}\n" * 16).encode()


def etag_of(body: bytes) -> str:
    """The strong ETag the test server sends for ``body``."""
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


@attrs.define
class HttpServer:
    """A minimal HTTP/1.1 file server on raw Trio sockets (RFC 9112 framing, one request per
    connection, ``Connection: close``), with RFC 9110 ``Range: bytes=N-`` and ``If-Range``
    support and a strong ``ETag`` (:func:`etag_of`) on every body.

    Paths: ``/missing`` and those in ``missing`` → 404; ``/small/<anything>`` →
    :func:`small_body` after ``delay`` seconds; anything else → ``body``, or
    ``host_bodies[host]`` when the request's ``Host`` names that host. Paths in ``cut_once``
    get half their body and a dropped connection the first time (then ``on_cut(path)`` runs);
    paths in ``rate_limited_once`` get one 429 with ``Retry-After: <retry_after>``. With
    ``chunk_delay`` a body is sent in 8 pieces that far apart (seconds). With
    ``ignore_if_range`` a range is served even when ``If-Range`` does not match. Every request
    is logged in ``requests`` as ``(path, headers)`` and its arrival (``trio.current_time()``)
    in ``times``.
    """

    port: int = 0
    delay: float = 0.0
    requests: list[tuple[str, dict[str, str]]] = attrs.field(factory=list)
    times: list[float] = attrs.field(factory=list)
    cut_once: set[str] = attrs.field(factory=set)
    rate_limited_once: set[str] = attrs.field(factory=set)
    retry_after: int = 1
    missing: set[str] = attrs.field(factory=set)
    body: bytes = BODY
    other_body: bytes = OTHER_BODY
    host_bodies: dict[str, bytes] = attrs.field(factory=dict)
    chunk_delay: float = 0.0
    ignore_if_range: bool = False
    on_cut: Callable[[str], None] | None = None

    def body_for(self, path: str, host: str = "127.0.0.1") -> bytes:
        """The body served for ``path`` asked of ``host`` (without a cut or a range)."""
        if path.startswith("/small/"):
            return small_body(path)
        return self.host_bodies.get(host, self.body)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    @staticmethod
    def etag(body: bytes) -> str:
        """The ETag sent with ``body`` (:func:`etag_of`)."""
        return etag_of(body)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def request_headers(self, path: str) -> Iterator[dict[str, str]]:
        """The headers of each request for ``path``, in order."""
        return (headers for p, headers in self.requests if p == path)

    async def handle(self, stream: trio.SocketStream) -> None:
        try:
            raw = b""
            while b"\r\n\r\n" not in raw:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                raw += chunk
            head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            request_line, *lines = head.split("\r\n")
            _method, path, _version = request_line.split(" ")
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.requests.append((path, headers))
            self.times.append(trio.current_time())
            await self.respond(stream, path, headers)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    async def send(
        self, stream: trio.SocketStream, status: str, headers: dict[str, str], body: bytes
    ) -> None:
        lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items())]
        lines.append("Connection: close")
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not self.chunk_delay:
            await stream.send_all(body)
            return
        step = max(1, -(-len(body) // 8))
        for start in range(0, len(body), step):
            await stream.send_all(body[start : start + step])
            await trio.sleep(self.chunk_delay)

    async def respond(self, stream: trio.SocketStream, path: str, headers: dict[str, str]) -> None:
        if path == "/missing" or path in self.missing:
            await self.send(stream, "404 Not Found", {"Content-Length": "0"}, b"")
            return
        if path in self.rate_limited_once:
            self.rate_limited_once.discard(path)
            await self.send(
                stream,
                "429 Too Many Requests",
                {"Retry-After": str(self.retry_after), "Content-Length": "0"},
                b"",
            )
            return
        host = headers.get("host", "").rsplit(":", 1)[0]
        body = self.body_for(path, host)
        if path.startswith("/small/") and self.delay:
            await trio.sleep(self.delay)
        etag = etag_of(body)
        start = 0
        rng = headers.get("range")
        if_range = headers.get("if-range")
        if rng and if_range is not None and if_range != etag and not self.ignore_if_range:
            rng = None  # RFC 9110 §13.1.5: the representation changed, send all of it
        if rng:
            assert rng.startswith("bytes=")
            assert rng.endswith("-")
            start = int(rng[6:-1])
            if start >= len(body):
                await self.send(
                    stream,
                    "416 Range Not Satisfiable",
                    {"Content-Range": f"bytes */{len(body)}", "Content-Length": "0"},
                    b"",
                )
                return
            status = "206 Partial Content"
            extra = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
        else:
            status, extra = "200 OK", {}
        part = body[start:]
        out = {"Content-Length": str(len(part)), "Accept-Ranges": "bytes", "ETag": etag, **extra}
        if path in self.cut_once:
            self.cut_once.discard(path)
            # announce the whole body, send half, then drop the connection
            await self.send(stream, status, out, part[: len(part) // 2])
            if self.on_cut is not None:
                self.on_cut(path)
            return
        await self.send(stream, status, out, part)


@pytest.fixture
async def http_server(nursery: trio.Nursery) -> HttpServer:
    """A running :class:`HttpServer` on 127.0.0.1 (port chosen by the kernel)."""
    server = HttpServer()
    listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
    server.port = listeners[0].socket.getsockname()[1]
    return server
