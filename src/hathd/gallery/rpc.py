"""The downloader's three control-server calls: ``fetchqueue``, ``dlfetch``, ``dlfails``.

A thin layer over the image node's RPC client (:class:`hathd.hath.rpc.RpcClient`), which owns
the protocol (``docs/hath-protocol.md`` §1.1–§1.3): URLs and actkeys, ``Content-Length``
required, 3 tries with failover over ``rpc_server_ip``, ``KEY_EXPIRED`` → ``server_stat`` and
retry. What this layer adds:

* ``fetchqueue`` goes to ``/15/dl?`` and returns the raw body (not OK-prefixed, §6) for
  :func:`hathd.hath.gallery_meta.parse_queue_reply`;
* ``dlfetch`` returns the URL on line 1 of an ``OK`` reply, or ``None`` (a failed try, §1.3);
* ``dlfails`` never raises: a report that cannot be delivered is logged;
* the node's ``RpcUnavailable`` becomes :class:`RpcUnavailable`, a
  :class:`~hathd.errors.RetryableError`, so a job whose control server is gone is retried by
  the engine.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import attrs
import trio

from hathd.errors import RetryableError
from hathd.hath import protocol
from hathd.hath import rpc as node_rpc
from hathd.hath.protocol import Credentials, RpcReply, ServerClock

log = logging.getLogger(__name__)


class RpcUnavailable(RetryableError):
    """The control server could not be reached or gave no usable reply after every try."""


@attrs.frozen
class RpcTarget:
    """Where the control server is: ``host`` (name or IP literal), ``port``, ``rpc_path``."""

    host: str = protocol.DEFAULT_RPC_HOST
    port: int = 80
    rpc_path: str = protocol.DEFAULT_RPC_PATH

    @classmethod
    def parse(cls, text: str, rpc_path: str = protocol.DEFAULT_RPC_PATH) -> RpcTarget:
        """``host``, ``host:port`` or ``[v6]:port``.

        :raises ValueError: a port that is not an integer in 1..65535.
        """
        text = text.strip()
        host, port = text, 80
        if text.startswith("["):
            end = text.index("]")
            host = text[1:end]
            rest = text[end + 1 :]
            if rest.startswith(":"):
                port = int(rest[1:])
        elif text.count(":") == 1:
            host, _, port_s = text.partition(":")
            port = int(port_s)
        if not 1 <= port <= 65535:
            raise ValueError(f"port out of range: {port}")
        return cls(host or protocol.DEFAULT_RPC_HOST, port, rpc_path)

    @property
    def bootstrap(self) -> str:
        """``host`` or ``host:port`` as :class:`~hathd.hath.rpc.RpcClient` takes it."""
        return protocol.rpc_host(self.host, self.port)


class DownloaderRpc:
    """The downloader's calls over ``client`` (owned by the caller)."""

    def __init__(self, client: node_rpc.RpcClient) -> None:
        self.client = client

    @property
    def clock(self) -> ServerClock:
        """The server clock the client signs with."""
        return self.client.clock

    async def sync_clock(self) -> None:
        """``server_stat`` → the clock offset (§1.3).

        :raises RpcUnavailable: no usable reply.
        """
        try:
            reply = await self.client.server_stat()
        except node_rpc.RpcUnavailable as exc:
            raise RpcUnavailable(str(exc)) from None
        if not reply.ok:
            raise RpcUnavailable(f"server_stat failed: {reply.status!r}")

    async def fetchqueue(self, add: str = "") -> bytes:
        """``fetchqueue`` on ``/15/dl?``; ``add`` = ``""`` or ``<gid>;<minxres>`` of the gallery
        just finished. Returns the raw body (§6).

        :raises RpcUnavailable: no usable reply after every try.
        """
        try:
            return await self.client.raw("fetchqueue", add, dl=True)
        except node_rpc.RpcUnavailable as exc:
            raise RpcUnavailable(str(exc)) from None

    async def call(self, act: str, add: str) -> RpcReply:
        """An OK-prefixed action on ``rpc_path``.

        :raises RpcUnavailable: no usable reply after every try.
        """
        try:
            return await self.client.call(act, add)
        except node_rpc.RpcUnavailable as exc:
            raise RpcUnavailable(str(exc)) from None

    async def dlfetch(self, add: str) -> str | None:
        """``dlfetch`` → the download URL on line 1 of an OK reply, else ``None`` (§1.3).

        :raises RpcUnavailable: no usable reply after every try.
        """
        reply = await self.call("dlfetch", add)
        lines = reply.nonempty_lines()
        if not reply.ok or not lines:
            log.warning("dlfetch %s: status %r, no URL", add, reply.status)
            return None
        url = lines[0].strip()
        if not url.startswith(("http://", "https://")):
            log.warning("dlfetch %s: not a URL: %r", add, url[:200])
            return None
        return url

    async def dlfails(self, add: str) -> bool:
        """Report failed downloads (``add`` from :func:`hathd.gallery.plan.dlfails_add`).
        Returns whether the server said OK; errors are logged, never raised."""
        try:
            reply = await self.call("dlfails", add)
        except RpcUnavailable as exc:
            log.warning("dlfails not delivered: %s", exc)
            return False
        if not reply.ok:
            log.warning("dlfails refused: %r", reply.status)
        return reply.ok


OpenRpc = Callable[[], AbstractAsyncContextManager[DownloaderRpc]]
"""How the handler and the downloader get a :class:`DownloaderRpc` for a while."""


def standalone_rpc(
    target: RpcTarget,
    credentials: Callable[[], Credentials],
    clock: ServerClock,
    *,
    timeout: float = 600.0,
) -> OpenRpc:
    """An :data:`OpenRpc` with its own :class:`~hathd.hath.rpc.RpcClient` per use (closed
    afterwards), sharing ``clock``, which is synced with ``server_stat`` on first use (later
    drift is caught by ``KEY_EXPIRED``). ``credentials`` is called in a worker thread on each
    use (it may read a file; it may raise).

    :raises RpcUnavailable: (on entering) the first clock sync failed.
    """
    synced = False

    @asynccontextmanager
    async def open_rpc() -> AsyncIterator[DownloaderRpc]:
        nonlocal synced
        creds = await trio.to_thread.run_sync(credentials)
        client = node_rpc.RpcClient(
            creds,
            bootstrap=target.bootstrap,
            rpc_path=target.rpc_path,
            timeout=timeout,
            clock=clock,
        )
        try:
            rpc = DownloaderRpc(client)
            if not synced:
                await rpc.sync_clock()
                synced = True
            yield rpc
        finally:
            await client.aclose()

    return open_rpc
