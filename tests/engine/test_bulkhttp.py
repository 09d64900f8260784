"""The bulk-download HTTP client against real servers on 127.0.0.1 (raw Trio sockets, TLS with a
test CA made by trustme): bodies arrive intact over plain HTTP and TLS, reads grow to 1 MiB only
while the socket fills them, errors and timeouts are httpx's."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import httpx
import pytest
import trio
import trustme

from hathd.engine.bulkhttp import MAX_READ, BulkBackend, BulkStream, bulk_client

BODY = hashlib.sha256(b"seed").digest() * (12 << 20 >> 5)  # 12 MiB
"""A body of 12 MiB that is not one repeated byte."""

Handler = Callable[[trio.abc.Stream], Awaitable[None]]


async def _read_request(stream: trio.abc.Stream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    return data


def _answer(body: bytes) -> Handler:
    async def handler(stream: trio.abc.Stream) -> None:
        await _read_request(stream)
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        await stream.send_all(head)
        for i in range(0, len(body), 1 << 20):
            await stream.send_all(body[i : i + (1 << 20)])

    return handler


@asynccontextmanager
async def serve(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[int, list[int]]]:
    """A server on a free port of 127.0.0.1 running ``handler`` per connection; yields the
    port and a list counting the connections."""
    seen: list[int] = []

    async def one(stream: trio.SocketStream) -> None:
        seen.append(1)
        wrapped: trio.abc.Stream = stream
        if tls is not None:
            wrapped = trio.SSLStream(stream, tls, server_side=True)
        try:
            await handler(wrapped)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await wrapped.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, one, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1], seen
        nursery.cancel_scope.cancel()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def _contexts(ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def test_plain_http_body_intact_and_reads_grow_to_the_cap() -> None:
    async with serve(_answer(BODY)) as (port, _):
        stream = await BulkBackend().connect_tcp("127.0.0.1", port, timeout=10)
        assert isinstance(stream, BulkStream)
        await stream.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=10)
        await trio.sleep(0.2)  # let the server fill the socket buffers
        data = b""
        sizes: list[int] = []
        steps: list[int] = []
        while len(data) < len(BODY):
            chunk = await stream.read(65536, timeout=10)
            assert chunk
            sizes.append(len(chunk))
            steps.append(stream.step)
            data += chunk
        await stream.aclose()
    assert data.split(b"\r\n\r\n", 1)[1] == BODY
    assert max(sizes) > 65536  # more than httpcore's 64 KiB per read
    assert max(sizes) <= MAX_READ
    assert max(steps) == MAX_READ


async def test_trickling_body_never_asks_more_than_httpcore_does() -> None:
    async def trickle(stream: trio.abc.Stream) -> None:
        await _read_request(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n")
        for _ in range(20):
            await stream.send_all(b"x" * 100)
            await trio.sleep(0.01)

    async with serve(trickle) as (port, _):
        stream = await BulkBackend().connect_tcp("127.0.0.1", port, timeout=10)
        assert isinstance(stream, BulkStream)
        await stream.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=10)
        got = 0
        steps: list[int] = []
        while got < 2000 + 39:
            got += len(await stream.read(65536, timeout=10))
            steps.append(stream.step)
        await stream.aclose()
    assert max(steps) == 65536  # no 1 MiB buffer asked for a few bytes


async def test_client_streams_a_body_over_plain_http() -> None:
    async with (
        serve(_answer(BODY)) as (port, _),
        bulk_client(verify=ssl.create_default_context(), timeout=httpx.Timeout(10)) as client,
        client.stream("GET", f"http://127.0.0.1:{port}/f") as resp,
    ):
        assert resp.status_code == 200
        got = b"".join([c async for c in resp.aiter_raw()])
    assert got == BODY


async def test_client_streams_a_body_over_tls(ca: trustme.CA) -> None:
    server, client_ctx = _contexts(ca)
    async with (
        serve(_answer(BODY), tls=server) as (port, _),
        bulk_client(verify=client_ctx, timeout=httpx.Timeout(10)) as client,
    ):
        resp = await client.get(f"https://127.0.0.1:{port}/f")
    assert resp.status_code == 200
    assert resp.content == BODY


async def test_tls_with_an_unknown_ca_is_refused(ca: trustme.CA) -> None:
    server, _ = _contexts(ca)
    async with (
        serve(_answer(b"secret"), tls=server) as (port, _),
        bulk_client(verify=ssl.create_default_context(), timeout=httpx.Timeout(10)) as client,
    ):
        with pytest.raises(httpx.ConnectError):
            await client.get(f"https://127.0.0.1:{port}/f")


async def test_read_timeout_is_httpx_read_timeout() -> None:
    async def silent(stream: trio.abc.Stream) -> None:
        await _read_request(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await trio.sleep(30)

    async with (
        serve(silent) as (port, _),
        bulk_client(
            verify=ssl.create_default_context(), timeout=httpx.Timeout(10, read=0.3)
        ) as client,
        client.stream("GET", f"http://127.0.0.1:{port}/f") as resp,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await resp.aread()


async def test_refused_connection_is_httpx_connect_error() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        async with bulk_client(
            verify=ssl.create_default_context(), timeout=httpx.Timeout(5)
        ) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{port}/")


async def test_body_cut_short_is_httpx_remote_protocol_error() -> None:
    async def cut(stream: trio.abc.Stream) -> None:
        await _read_request(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)

    async with (
        serve(cut) as (port, _),
        bulk_client(verify=ssl.create_default_context(), timeout=httpx.Timeout(5)) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_keep_alive_reuses_the_connection() -> None:
    async def two(stream: trio.abc.Stream) -> None:
        for _ in range(2):
            await _read_request(stream)
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async with (
        serve(two) as (port, seen),
        bulk_client(verify=ssl.create_default_context(), timeout=httpx.Timeout(5)) as client,
    ):
        for _ in range(2):
            assert (await client.get(f"http://127.0.0.1:{port}/")).content == b"ok"
    assert len(seen) == 1


async def test_environment_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    requests: list[bytes] = []

    async def proxy(stream: trio.abc.Stream) -> None:
        requests.append(await _read_request(stream))
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nproxied")

    async with serve(proxy) as (port, _):
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        async with bulk_client(
            verify=ssl.create_default_context(), timeout=httpx.Timeout(5)
        ) as client:
            resp = await client.get("http://media.example.invalid/ep.mp4")
    assert resp.content == b"proxied"
    assert requests[0].startswith(b"GET http://media.example.invalid/ep.mp4 HTTP/1.1")


async def test_no_proxy_host_goes_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    async with serve(_answer(b"direct")) as (port, _):
        for name in ("no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # discard port: nothing there
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with bulk_client(
            verify=ssl.create_default_context(), timeout=httpx.Timeout(5)
        ) as client:
            resp = await client.get(f"http://127.0.0.1:{port}/")
    assert resp.content == b"direct"
