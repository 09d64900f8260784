"""The RPC client: plain-HTTP actions to the control server with clock sync and failover.

Behaviour (docs/hath-protocol.md §1): every action URL comes from :mod:`hathd.hath.protocol`.
``KEY_EXPIRED`` re-runs ``server_stat`` and retries (J162 once, RS up to 3 times: we retry
twice). A reply without ``Content-Length``, an empty body, ``TEMPORARILY_UNAVAILABLE…``, a
connect error, a timeout or a 5xx marks the host failed and the next try goes to another IP of
``rpc_server_ip`` (J162 ``Settings.getRPCServerHost``; RS ``send_action``). 3 tries per action.

Errors: :class:`RpcUnavailable` when every try failed at the network level (a host that makes
no valid URL counts as such a failure); fail codes are *returned* in the
:class:`~hathd.hath.protocol.RpcReply` for the caller to match by prefix.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import httpx

from hathd.hath import protocol as p

log = logging.getLogger(__name__)

MAX_REPLY = 10 * 1024 * 1024
"""Replies held in memory are capped at 10 MB (J162 ``FileDownloader``; §1.1)."""
TRIES = 3


class RpcUnavailable(Exception):
    """No RPC host answered usefully after all tries."""


class RpcClient:
    """Sends RPC actions for one client; see the module docstring.

    ``bootstrap`` is the first host (``host`` or ``host:port``); once settings carry
    ``rpc_server_ip`` (and ``rpc_server_port``), requests go to a random listed IP, skipping
    the one that last failed. ``timeout`` is the read timeout in seconds (connect is 5 s).
    """

    def __init__(
        self,
        creds: p.Credentials,
        *,
        bootstrap: str,
        rpc_path: str = p.DEFAULT_RPC_PATH,
        timeout: float = 600.0,
        clock: p.ServerClock | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.creds = creds
        self.clock = clock or p.ServerClock()
        self.rpc_path = rpc_path
        self.bootstrap = bootstrap
        self.ips: list[str] = []
        self.port = 80
        self.failed: str | None = None
        self.current: str | None = None
        self.min_client_build = 0
        self.cur_client_build = 0
        self.calls = 0
        self.failovers = 0
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=5.0),
            headers={"User-Agent": p.USER_AGENT, "Connection": "close"},
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` ran (the node has stopped); a closed client sends nothing."""
        return self._http.is_closed

    # -- hosts -----------------------------------------------------------------------------

    def apply_settings(self, settings: dict[str, str]) -> None:
        """Take ``rpc_server_ip``, ``rpc_server_port`` and ``rpc_path`` from a settings reply
        (§2). The current host is kept if it is still listed (1.6.5). Entries of
        ``rpc_server_ip`` that are not IP literals are dropped with a warning
        (:func:`~hathd.hath.protocol.parse_ip_list`); when none is left, requests keep going to
        the bootstrap host."""
        if "rpc_server_ip" in settings:
            self.ips, rejected = p.parse_ip_list(settings["rpc_server_ip"])
            if rejected:
                log.warning(
                    "rpc_server_ip: ignoring %d entries that are not IP addresses: %s",
                    len(rejected),
                    ", ".join(repr(x[:64]) for x in rejected[:5]),
                )
            if self.current not in self.ips:
                self.current = None
        if settings.get("rpc_server_port", "").isdigit():
            self.port = int(settings["rpc_server_port"])
        path = settings.get("rpc_path", "")
        if path.endswith("?"):
            self.rpc_path = path

    def host(self) -> tuple[str, int]:
        """The ``(host, port)`` to use now."""
        if not self.ips:
            host, _, port = self.bootstrap.rpartition(":")
            if host and port.isdigit() and not host.endswith(":"):
                return host, int(port)
            return self.bootstrap, 80
        if self.current is None or self.current == self.failed:
            choices = [ip for ip in self.ips if ip != self.failed] or self.ips
            self.current = random.choice(choices)
        return self.current, self.port

    def mark_failed(self, host: str) -> None:
        """Mark ``host`` failed: the next request picks another (§1.2)."""
        self.failed = host
        if self.current == host:
            self.current = None
        self.failovers += 1

    def clear_failed(self) -> None:
        """Forget the failure mark (every ~4 h, §1.2)."""
        self.failed = None

    # -- transport -------------------------------------------------------------------------

    async def _fetch(self, url: str) -> tuple[int, bytes]:
        async with self._http.stream("GET", url) as reply:
            length = reply.headers.get("content-length")
            if length is None or not length.isdigit():
                raise RpcUnavailable("reply without Content-Length")  # J162 FileDownloader
            if int(length) > MAX_REPLY:
                raise RpcUnavailable(f"reply of {length} bytes is over the 10 MB cap")
            body = await reply.aread()
            return reply.status_code, body

    async def _get_raw(self, build_url: Callable[[str], str], act: str) -> tuple[str, bytes]:
        """GET with failover; returns ``(host, body)`` of a 2xx reply with a body."""
        last: Exception | None = None
        for _ in range(TRIES):
            host, port = self.host()
            url = build_url(p.rpc_host(host, port))
            self.calls += 1
            try:
                status, body = await self._fetch(url)
            except (httpx.HTTPError, httpx.InvalidURL, RpcUnavailable, OSError) as exc:
                # InvalidURL: a host (bootstrap or listed) that makes no valid URL; like an
                # unreachable host it is marked failed, and the next try goes elsewhere.
                last = exc
                log.warning("RPC %s to %s failed: %s", act, host, exc)
                self.mark_failed(host)
                continue
            if status >= 500 or not body:
                last = RpcUnavailable(f"HTTP {status}" if status >= 500 else "empty reply")
                self.mark_failed(host)
                continue
            return host, body
        raise RpcUnavailable(f"{act}: no RPC host answered ({last})")

    # -- actions ---------------------------------------------------------------------------

    async def server_stat(self) -> p.RpcReply:
        """``server_stat`` (no auth): sync the clock (RTT/4 added as RS does) and record the
        build gates (§1.3). :raises RpcUnavailable:"""
        began = time.monotonic()
        _, body = await self._get_raw(
            lambda host: p.server_stat_url(host, rpc_path=self.rpc_path), "server_stat"
        )
        rtt = time.monotonic() - began
        reply = p.parse_reply(body)
        settings = reply.settings()
        if reply.ok and settings.get("server_time", "").lstrip("-").isdigit():
            self.clock.sync(int(settings["server_time"]), time.time(), rtt)
        if settings.get("min_client_build", "").isdigit():
            self.min_client_build = int(settings["min_client_build"])
        if settings.get("cur_client_build", "").isdigit():
            self.cur_client_build = int(settings["cur_client_build"])
        return reply

    def _url_template(self, act: str, add: str, *, dl: bool = False) -> Callable[[str], str]:
        t = self.clock.server_time(time.time())
        if dl:
            return lambda host: p.dl_url(host, add, self.creds, t, act=act)
        return lambda host: p.rpc_url(host, act, add, self.creds, t, rpc_path=self.rpc_path)

    async def raw(self, act: str, add: str = "", *, dl: bool = False) -> bytes:
        """An authenticated action's raw body (``get_cert``; ``dl=True`` for ``/15/dl?``).
        Resyncs on ``KEY_EXPIRED`` like :meth:`call`. :raises RpcUnavailable:"""
        body = b""
        for attempt in range(3):
            _, body = await self._get_raw(self._url_template(act, add, dl=dl), act)
            if not body.startswith(p.STATUS_KEY_EXPIRED.encode()) or attempt == 2:
                break
            await self.server_stat()
        return body

    async def call(self, act: str, add: str = "") -> p.RpcReply:
        """Send ``act`` and parse the reply. ``KEY_EXPIRED`` → ``server_stat`` and retry (up to
        twice); a null reply (``TEMPORARILY_UNAVAILABLE``) fails over to another host.

        :raises RpcUnavailable: no host gave a usable reply.
        """
        reply = p.RpcReply("", ())
        for attempt in range(3):
            _, body = await self._get_raw(self._url_template(act, add), act)
            reply = p.parse_reply(body)
            if reply.key_expired and attempt < 2:
                log.info("RPC %s: KEY_EXPIRED, resyncing the clock", act)
                await self.server_stat()
                continue
            if reply.is_null and attempt < 2:
                if self.current is not None:
                    self.mark_failed(self.current)
                continue
            break
        return reply
