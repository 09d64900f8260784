"""Fixtures of the engine tests: an in-process engine on a real store, with short retry waits."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
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
    """A :class:`Config` whose engine retries fast (0.05 s, 0.05 s, final after 0.1 s)."""
    fields: dict[str, Any] = {"workers": 4, "retry": {"default": FAST_RETRY}}
    fields.update(overrides)
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


def small_body(path: str) -> bytes:
    """The body served for ``/small/...`` paths: a few hundred bytes that depend on the path."""
    return (f"{path}\n" * 16).encode()


@attrs.define
class HttpServer:
    """A minimal HTTP/1.1 file server on raw Trio sockets (RFC 9112 framing, one request per
    connection, ``Connection: close``), with RFC 9110 ``Range: bytes=N-`` support.

    Paths: ``/missing`` → 404; ``/small/<anything>`` → :func:`small_body` after ``delay``
    seconds; anything else → :data:`BODY`. Paths in ``cut_once`` get half their body and a
    dropped connection the first time; paths in ``rate_limited_once`` get one 429 with
    ``Retry-After: 1``. Every request is logged in ``requests`` as ``(path, headers)``.
    """

    port: int = 0
    delay: float = 0.0
    requests: list[tuple[str, dict[str, str]]] = attrs.field(factory=list)
    cut_once: set[str] = attrs.field(factory=set)
    rate_limited_once: set[str] = attrs.field(factory=set)
    body: bytes = BODY

    def body_for(self, path: str) -> bytes:
        """The body served for ``path`` (without a cut or a range)."""
        return small_body(path) if path.startswith("/small/") else self.body

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

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
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    async def respond(self, stream: trio.SocketStream, path: str, headers: dict[str, str]) -> None:
        if path == "/missing":
            await self.send(stream, "404 Not Found", {"Content-Length": "0"}, b"")
            return
        if path in self.rate_limited_once:
            self.rate_limited_once.discard(path)
            await self.send(
                stream, "429 Too Many Requests", {"Retry-After": "1", "Content-Length": "0"}, b""
            )
            return
        body = self.body
        if path.startswith("/small/"):
            body = small_body(path)
            if self.delay:
                await trio.sleep(self.delay)
        start = 0
        rng = headers.get("range")
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
        out = {"Content-Length": str(len(part)), "Accept-Ranges": "bytes", **extra}
        if path in self.cut_once:
            self.cut_once.discard(path)
            # announce the whole body, send half, then drop the connection
            await self.send(stream, status, out, part[: len(part) // 2])
            return
        await self.send(stream, status, out, part)


@pytest.fixture
async def http_server(nursery: trio.Nursery) -> HttpServer:
    """A running :class:`HttpServer` on 127.0.0.1 (port chosen by the kernel)."""
    server = HttpServer()
    listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
    server.port = listeners[0].socket.getsockname()[1]
    return server
