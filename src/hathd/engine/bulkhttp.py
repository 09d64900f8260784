"""An httpx client for bulk downloads: the body is read from the socket in up to 1 MiB steps.

httpcore's HTTP/1.1 connection asks its network stream for 64 KiB per read
(``AsyncHTTP11Connection.READ_NUM_BYTES``); for a large body each read costs a ``recv`` plus the
h11, httpcore and Trio layers above it, which is most of the CPU time of a download. Changing
that class attribute would change every HTTP client of the process (the H@H ``srfetch``, the
provider pages…), so this module does it for the bulk clients only, through httpcore's public
extension points:

- :class:`BulkStream` wraps a network stream (``httpcore.AsyncNetworkStream``) and sizes each
  read by what the previous one brought: a read that filled the request doubles the next one
  (up to :data:`MAX_READ`), a read that brought less than a quarter halves it (down to the
  size httpcore asks for, 64 KiB). A slow or small body thus never asks for 1 MiB, so no
  1 MiB buffer is allocated for a few bytes; a fast plain-HTTP body settles at 1 MiB reads.
  Over TLS a read returns at most one record (16 KiB, RFC 8446 §5.1; measured with Trio's
  ``SSLStream``), so the step stays at 64 KiB and HTTPS bodies read as before.
- :class:`BulkBackend` (an ``httpcore.AsyncNetworkBackend``) hands out such streams, also after
  ``start_tls``, over httpcore's Trio backend.
- :class:`BulkTransport` is a small ``httpx.AsyncBaseTransport`` over an
  ``httpcore.AsyncConnectionPool(network_backend=BulkBackend())`` (httpx 0.28 has no argument
  for a network backend): it maps an ``httpx.Request`` to ``httpcore`` and back, and
  httpcore's errors to httpx's of the same name (``ReadTimeout``, ``ConnectError``…), so callers
  catch what they caught before.

Timeouts travel in the request's ``extensions`` as with httpx's own transport. Proxies from the
environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) are still honoured:
httpx ignores them once a transport is given, so :class:`BulkTransport` sends such requests
through httpx's own proxy transport (those read 64 KiB at a time). Politeness is the
caller's: this module only moves bytes. Measurements: docs/anime.md, "Performance".
"""

from __future__ import annotations

import ssl
import typing
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

MAX_READ = 1 << 20
"""Largest read asked of the socket, bytes."""

DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""httpx's default connection limits."""

_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    # most specific first: the first match wins
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


_bypass: Callable[[str, dict[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
"""``urllib.request.proxy_bypass_environment``: ``host`` matches ``NO_PROXY`` (not in the
module's stubs)."""


@contextmanager
def _mapped() -> Iterator[None]:
    """Raise httpcore's errors as the httpx error of the same name."""
    try:
        yield
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class BulkStream(httpcore.AsyncNetworkStream):
    """A network stream whose reads grow to :data:`MAX_READ` bytes while they come back full
    (see the module docstring); everything else is the wrapped stream's."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._size = 0

    @property
    def step(self) -> int:
        """Bytes the next read asks for at least (0 until the first read: httpcore's size)."""
        return self._size

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Up to ``max(max_bytes, current step)`` bytes (``b""`` at the end of the stream).

        :raises httpcore.ReadTimeout: nothing within ``timeout`` seconds.
        :raises httpcore.ReadError: the connection broke.
        """
        size = max(self._size, max_bytes)
        data = await self._stream.read(size, timeout)
        got = len(data)
        if got >= size:
            self._size = min(size * 2, MAX_READ)
        elif got < size >> 2:
            self._size = max(size >> 1, max_bytes)
        else:
            self._size = size
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Send ``buffer`` whole (``timeout`` seconds)."""
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        """Close the connection."""
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """The TLS stream over this connection, itself a :class:`BulkStream`."""
        inner = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        return BulkStream(inner)

    def get_extra_info(self, info: str) -> Any:
        """The wrapped stream's ``ssl_object``, ``server_addr``, ``is_readable``…"""
        return self._stream.get_extra_info(info)


class BulkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's Trio backend handing out :class:`BulkStream` connections."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._backend = backend or httpcore.TrioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A TCP connection to ``host:port`` (``timeout`` seconds).

        :raises httpcore.ConnectError: refused, unreachable, no such host.
        :raises httpcore.ConnectTimeout: not connected within ``timeout``.
        """
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return BulkStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A connection to the unix socket ``path``."""
        stream = await self._backend.connect_unix_socket(path, timeout, socket_options)
        return BulkStream(stream)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (httpcore's retries)."""
        await self._backend.sleep(seconds)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: typing.AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


class BulkTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an ``httpcore.AsyncConnectionPool`` with :class:`BulkBackend`.

    :param verify: the TLS context (e.g. :func:`hathd.engine.download.ssl_context`).
    :param limits: connection limits as for httpx's own transport.
    :param proxies: ``{scheme or "all": proxy URL, "no": hosts}`` as
        :func:`urllib.request.getproxies_environment` gives them: a request whose scheme has a
        proxy, and whose host is not excluded (``NO_PROXY``,
        :func:`urllib.request.proxy_bypass_environment`), goes through httpx's own transport
        for that proxy.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext,
        limits: httpx.Limits = DEFAULT_LIMITS,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        self._verify = verify
        self._limits = limits
        self._proxies = dict(proxies or {})
        self._via: dict[str, httpx.AsyncHTTPTransport] = {}
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=BulkBackend(),
        )

    def _proxy_for(self, url: httpx.URL) -> httpx.AsyncHTTPTransport | None:
        proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
        if not proxy or _bypass(url.host, self._proxies):
            return None
        transport = self._via.get(proxy)
        if transport is None:
            transport = httpx.AsyncHTTPTransport(
                verify=self._verify, limits=self._limits, proxy=proxy, trust_env=False
            )
            self._via[proxy] = transport
        return transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; the response's body is streamed.

        :raises httpx.TransportError: the httpx error named like httpcore's.
        """
        via = self._proxy_for(request.url)
        if via is not None:
            return await via.handle_async_request(request)
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _mapped():
            resp = await self._pool.handle_async_request(core)
        assert isinstance(resp.stream, typing.AsyncIterable)
        return httpx.Response(
            status_code=resp.status,
            headers=resp.headers,
            stream=_ResponseStream(resp.stream),
            extensions=resp.extensions,
        )

    async def aclose(self) -> None:
        """Close every connection."""
        await self._pool.aclose()
        for transport in self._via.values():
            await transport.aclose()


def bulk_client(
    *,
    verify: ssl.SSLContext,
    timeout: httpx.Timeout,
    follow_redirects: bool = False,
    trust_env: bool = True,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` over a :class:`BulkTransport` (``timeout`` as for httpx).

    :param trust_env: honour the proxy environment variables (``HTTP_PROXY``,
        ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) as httpx does by default (httpx itself
        ignores them once a transport is given, so the transport routes them).
    """
    proxies = urllib.request.getproxies_environment() if trust_env else {}
    return httpx.AsyncClient(
        transport=BulkTransport(verify=verify, proxies=proxies),
        timeout=timeout,
        follow_redirects=follow_redirects,
        verify=verify,
        trust_env=False,
    )
