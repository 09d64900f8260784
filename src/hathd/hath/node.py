"""The H@H node: the RPC keeper that owns the image server, the srfetch proxy and the pruner.

Start-up, in the official order (docs/hath-protocol.md §7): ``server_stat`` (clock sync, build gate)
→ ``client_login`` once → open the cache index (no directory walk) → ``get_cert`` → listen,
RPC-server IPs only → ``client_start`` → open to everyone → ``client_settings`` →
``get_blacklist(259200)`` → ready. Then, concurrently: ``still_alive`` every
``still_alive_interval`` s (~110), ``get_blacklist(43200)`` every ``blacklist_interval`` s
(~6 h), the 10 s housekeeping cycle (LRU sweep, flood-control pruning, failed-RPC-host reset
every ~4 h), the pruner, certificate refreshes. On shutdown ``client_stop`` is sent.

Fail codes are matched by prefix (§1.2). ``client_login`` "must be sent only once per process"
(§1.3), so a reply that a restart cannot cure is terminal, never a crash the supervisor would
answer with another login:

* terminal (:class:`NodeRefused`; :meth:`HathNode.serve` returns normally, state ``refused``,
  :attr:`HathNode.reason` says why, no further ``client_login`` until hathd is restarted):
  ``client_login`` with a status other than OK, ``FAIL_STARTUP_LOOP`` or a null reply (Java:
  bad credentials); ``client_start`` ``FAIL_OTHER_CLIENT_CONNECTED`` / ``FAIL_CID_IN_USE``
  (Java and RS: the client terminates); ``server_stat`` naming a minimum build above ours;
* ``client_login`` ``FAIL_STARTUP_LOOP``: wait 15 min (RS), then :class:`NodeError`, so the
  supervisor's restart logs in again at most once per 15 min;
* ``client_login`` or ``client_start`` null reply (empty, ``TEMPORARILY_UNAVAILABLE``, after
  the RPC client's tries): :class:`NodeError`, restarted with backoff (the server never said
  no);
* ``client_start`` ``FAIL_CONNECT_TEST`` or any other fail code: keep running, RPC IPs only
  (Java's ``notifyStart`` returns false and the client idles); state ``connect-test-failed`` or
  ``start-failed``;
* ``still_alive`` ``TERM_BAD_NETWORK`` / ``FAIL_NOT_LOGGED_IN``: the node stops, state
  ``terminated``.

Other errors that end :meth:`HathNode.serve` are contained here as one :class:`NodeError` or
:class:`~hathd.hath.rpc.RpcUnavailable` (never an ExceptionGroup); the supervisor restarts it.

Bus room ``hath`` events: ``login``, ``started``, ``settings``, ``cert``, ``blacklist``,
``prune``, ``overload``, ``start_downloader``, ``stopped``, ``terminated``, ``refused``.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from hathd.events import EventBus
from hathd.excgroups import leaves
from hathd.hath import protocol as p
from hathd.hath.cache import Cache
from hathd.hath.config import HathConfig
from hathd.hath.limits import UploadThrottle
from hathd.hath.proxy import SrfetchProxy
from hathd.hath.rpc import RpcClient, RpcUnavailable
from hathd.hath.server import ImageServer, ServerHooks, ServerPolicy
from hathd.hath.tls import CertHolder, expires_soon
from hathd.hath.workers import ServingProcesses
from hathd.store import Store

log = logging.getLogger(__name__)

CYCLE = 10.0
"""The housekeeping period in seconds (J162 main loop; §7)."""
STARTUP_LOOP_BACKOFF = 900.0
BLACKLIST_STARTUP = 259200
BLACKLIST_PERIODIC = 43200
STOP_TIMEOUT = 5.0
CERT_RETRY = 10.0


class NodeError(Exception):
    """The node cannot run now (bad certificate, no usable reply, startup loop); the supervisor
    restarts it."""


class NodeRefused(NodeError):
    """The control server refused this client in a way no restart cures (bad credentials,
    another client on the IP or the client ID, a build below the minimum). :meth:`HathNode.serve`
    turns it into the terminal state ``refused`` instead of raising it."""


@attrs.define
class NodeSettings:
    """Settings from the control server (§2), merged with ``[hath]`` overrides."""

    port: int = 0
    host: str | None = None
    throttle_bytes: int = 0
    disklimit_bytes: int | None = None
    diskremaining_bytes: int = 0
    static_ranges: set[str] = attrs.field(factory=set)
    max_connections: int | None = None
    verify_cache: bool = False
    rescan_cache: bool = False

    def update(self, s: dict[str, str]) -> None:
        """Apply one settings reply; unknown keys and malformed numbers are ignored."""

        def num(key: str) -> int | None:
            v = s.get(key, "")
            return int(v) if v.isdigit() else None

        if (port := num("port")) is not None and self.port == 0:
            self.port = port  # a configured port wins (§2)
        if s.get("host"):
            self.host = s["host"]
        if (t := num("throttle_bytes")) is not None:
            self.throttle_bytes = t
        if (d := num("disklimit_bytes")) is not None:
            self.disklimit_bytes = d
        if (r := num("diskremaining_bytes")) is not None:
            self.diskremaining_bytes = r
        if "static_ranges" in s:
            self.static_ranges = {x.strip() for x in s["static_ranges"].split(";") if x.strip()}
        if (m := num("max_connections")) is not None:
            self.max_connections = m
        for flag in ("verify_cache", "rescan_cache"):
            if flag in s:
                setattr(self, flag, s[flag].lower() in ("true", "1", "yes"))


@attrs.frozen
class NodeStatistics:
    """What ``hathd status`` shows for the node."""

    state: str
    """``starting``, ``running``, ``connect-test-failed``, ``start-failed``, ``stopped``,
    ``terminated`` (told to stop by ``still_alive``) or ``refused`` (see the module doc)."""
    reason: str | None
    """Why the node is in ``refused``, ``terminated``, ``start-failed`` or
    ``connect-test-failed``; else ``None``."""
    port: int
    """The HTTPS port while the node serves; 0 before it listens and after it stopped."""
    client_id: int
    clock_offset: int
    rpc_calls: int
    rpc_failovers: int
    still_alive_sent: int
    cert_serial: str | None
    cert_swaps: int
    downloader_requests: int
    cache: Any
    server: Any
    """The image server's counters, summed over the serving processes."""
    proxy: Any
    serving_pids: list[int] = attrs.field(factory=list)
    """Process ids of the serving processes besides this one (``hath.serving_processes``)."""


class HathNode:
    """One H@H client; see the module docstring. ``on_start_downloader`` is what the servercmd
    ``start_downloader`` calls (``None``: the command is only recorded);
    ``local_exempt=False`` meters loopback clients too (tests, benchmarks)."""

    def __init__(
        self,
        cfg: HathConfig,
        creds: p.Credentials,
        *,
        store: Store,
        bus: EventBus,
        data_dir: Path,
        cache_root: Path,
        on_start_downloader: Callable[[], Any] | None = None,
        local_exempt: bool = True,
    ) -> None:
        self.cfg = cfg
        self.creds = creds
        self.store = store
        self.bus = bus
        self.data_dir = data_dir
        self.cache_root = cache_root
        self.on_start_downloader = on_start_downloader
        self.settings = NodeSettings(port=cfg.port)
        self.clock = p.ServerClock()
        self.rpc = RpcClient(
            creds,
            bootstrap=cfg.rpc_server,
            rpc_path=cfg.rpc_path,
            timeout=cfg.rpc_timeout,
            clock=self.clock,
        )
        self.certs = CertHolder(data_dir)
        self.throttle = UploadThrottle(0)
        self.policy = ServerPolicy(
            ip_origin_check=cfg.ip_origin_check,
            flood_control=cfg.flood_control,
            local_exempt=local_exempt,
            verify_on_serve=cfg.verify_on_serve,
            request_timeout=cfg.request_timeout,
        )
        self.cache: Cache | None = None
        self.proxy: SrfetchProxy | None = None
        self.server: ImageServer | None = None
        self.processes: ServingProcesses | None = None
        """The serving processes (``hath.serving_processes`` > 1), once started."""
        self.state = "starting"
        self.reason: str | None = None
        """Why the node stopped for good or idles (see :class:`NodeStatistics`)."""
        self.still_alive_sent = 0
        self.downloader_requests: list[str] = []
        self.ready = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._cert_requests: trio.MemorySendChannel[None] | None = None

    # -- settings --------------------------------------------------------------------------

    def apply_settings(self, s: dict[str, str]) -> None:
        """Merge a settings reply into the RPC client, the server policy and the throttle."""
        self.rpc.apply_settings(s)
        self.settings.update(s)
        if self.rpc.ips:
            self.policy.rpc_ips = set(self.rpc.ips)
        elif not self.policy.rpc_ips:
            host, _port = self.rpc.host()  # no list yet: trust the bootstrap host if it is an IP
            if _is_ip(host):
                self.policy.rpc_ips = {host}
        self.policy.own_host = self.settings.host
        rate = self.cfg.throttle_bytes
        self.throttle.set_rate(self.settings.throttle_bytes if rate is None else rate)
        self.policy.max_connections = p.max_connections(
            self.throttle.rate, self.cfg.max_connections or self.settings.max_connections
        )
        if self.processes is not None:
            self.processes.push_soon()

    def disk_limit(self) -> int:
        """The cache limit in bytes: the smaller of the server's and the configured one."""
        limits = [x for x in (self.settings.disklimit_bytes, self.cfg.disk_limit_bytes) if x]
        return min(limits) if limits else 0

    def statistics(self) -> NodeStatistics:
        """Current state and counters."""
        info = self.certs.info
        return NodeStatistics(
            state=self.state,
            reason=self.reason,
            port=self.server.port if self.server and self._nursery is not None else 0,
            client_id=self.creds.client_id,
            clock_offset=self.clock.offset,
            rpc_calls=self.rpc.calls,
            rpc_failovers=self.rpc.failovers,
            still_alive_sent=self.still_alive_sent,
            cert_serial=None if info is None else format(info.serial, "x"),
            cert_swaps=self.certs.swaps,
            downloader_requests=len(self.downloader_requests),
            cache=attrs.asdict(self.cache.statistics()) if self.cache else None,
            server=attrs.asdict(self.server.statistics()) if self.server else None,
            proxy=attrs.asdict(self.proxy.statistics()) if self.proxy else None,
            serving_pids=self.processes.pids() if self.processes else [],
        )

    def _publish(self, kind: str, **data: Any) -> None:
        self.bus.publish("hath", kind, data)

    # -- lifecycle -------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the node until cancelled, told to terminate, or refused; reports the HTTPS port.

        A refusal (:class:`NodeRefused`, see the module docstring) ends it *normally*, before
        it listens: ``task_status`` gets port 0, :attr:`state` is ``refused`` and
        :attr:`reason` says why. The supervisor then records the service as stopped and never
        restarts it, so ``client_login`` is not sent again until hathd restarts.

        :raises NodeError: the node cannot run now (see the module docstring).
        :raises RpcUnavailable: the control server is unreachable.
        """
        started = False
        refused: NodeRefused | None = None
        try:
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    port = await self._start(nursery)
                    started = True
                    if self.state == "starting":
                        self.state = "running"
                    self.ready.set()
                    self._publish("started", port=port)
                    task_status.started(port)
            except BaseExceptionGroup as group:
                _, rest = group.split(trio.Cancelled)
                if rest is None:
                    raise  # only cancellation: let the enclosing scope handle it
                raise leaves(rest)[0] from None
        except NodeRefused as exc:
            refused = exc
            self.state = "refused"
            self.reason = str(exc)
            log.error("H@H node stopped for good: %s (restart hathd once this is fixed)", exc)
            self._publish("refused", reason=self.reason)
        finally:
            self._nursery = None
            if started:
                with trio.CancelScope(shield=True), trio.move_on_after(STOP_TIMEOUT):
                    try:
                        await self.rpc.call("client_stop")
                    except RpcUnavailable as exc:
                        log.warning("client_stop failed: %s", exc)
                self._publish("stopped")
            if self.state not in ("terminated", "refused"):
                self.state = "stopped"
            with trio.CancelScope(shield=True):
                await self.rpc.aclose()
        if refused is not None and not started:
            task_status.started(0)

    async def _start(self, nursery: trio.Nursery) -> int:
        cfg = self.cfg
        await self.rpc.server_stat()
        if self.rpc.min_client_build > p.CLIENT_BUILD:
            raise NodeRefused(
                f"client build {p.CLIENT_BUILD} is below the server's minimum "
                f"{self.rpc.min_client_build}"
            )
        login = await self.rpc.call("client_login")
        if not login.ok:
            self._publish("login", ok=False, status=login.status)
            if login.is_null:
                raise NodeError(f"client_login: no usable reply ({login.status or 'empty'})")
            if login.failed_with("FAIL_STARTUP_LOOP"):
                log.error("client_login: FAIL_STARTUP_LOOP; waiting 15 minutes")
                await trio.sleep(STARTUP_LOOP_BACKOFF)
                raise NodeError(f"client_login refused: {login.status}")
            raise NodeRefused(
                f"client_login refused: {login.status} (check the client ID and key; "
                "`hathd hath login` stores new ones)"
            )
        self.apply_settings(login.settings())
        self._publish("login", ok=True)
        self.cache = cache = await Cache.open(self.store, self.cache_root)
        if self.settings.static_ranges:
            await cache.drop_outside_ranges(self.settings.static_ranges)
        if self.settings.verify_cache or self.settings.rescan_cache:
            await cache.rescan(verify=self.settings.verify_cache)
        await self._install_cert()
        self.proxy = SrfetchProxy(
            cache,
            self.rpc.call,
            self.creds,
            idle_timeout=cfg.upstream_timeout,
            max_size=cfg.max_allowed_filesize,
        )
        self.server = ImageServer(
            creds=self.creds,
            clock=self.clock,
            cache=cache,
            proxy=self.proxy,
            tls_context=lambda: self.certs.context,
            policy=self.policy,
            throttle=self.throttle,
            hooks=ServerHooks(
                refresh_settings=self.refresh_settings,
                refresh_certs=self.request_cert_refresh,
                start_downloader=self.start_downloader,
                overload=self._overload,
            ),
        )
        await nursery.start(self.proxy.serve)
        several = cfg.serving_processes > 1
        port: int = await nursery.start(
            partial(self.server.serve, cfg.listen_host, self.settings.port, reuse_port=several)
        )
        if several:
            self.processes = ServingProcesses(
                cfg.serving_processes,
                self.server,
                cache,
                host=cfg.listen_host,
                port=port,
                creds=self.creds,
                data_dir=self.data_dir,
                policy=self.policy,
                throttle=self.throttle,
                clock=self.clock,
                cert_id=lambda: str(self.certs.swaps),
            )
            await nursery.start(self.processes.run)
        start = await self.rpc.call("client_start")
        if start.ok:
            self.policy.startup_only = False
            if self.processes is not None:
                await self.processes.sync()
        elif start.is_null:
            raise NodeError(f"client_start: no usable reply ({start.status or 'empty'})")
        elif start.failed_with("FAIL_OTHER_CLIENT_CONNECTED"):
            raise NodeRefused(
                f"client_start refused: {start.status} (another client is already connected "
                "from this public IP; only one may run per IP)"
            )
        elif start.failed_with("FAIL_CID_IN_USE"):
            raise NodeRefused(
                f"client_start refused: {start.status} (another client is already using "
                f"client ID {self.creds.client_id})"
            )
        elif start.failed_with("FAIL_CONNECT_TEST"):
            log.warning("client_start: the server could not reach port %d; idling", port)
            self.state = "connect-test-failed"
            self.reason = f"client_start: {start.status}"
            self._publish("warning", status=start.status, message=self.reason)
        else:
            log.error("client_start refused: %s; idling (RPC-server IPs only)", start.status)
            self.state = "start-failed"
            self.reason = f"client_start: {start.status}"
            self._publish("warning", status=start.status, message=self.reason)
        settings = await self.rpc.call("client_settings")
        if settings.ok:
            self.apply_settings(settings.settings())
        await self.process_blacklist(BLACKLIST_STARTUP)
        send, recv = trio.open_memory_channel[None](1)
        self._cert_requests = send
        nursery.start_soon(self._cert_loop, recv)
        nursery.start_soon(self._housekeeping)
        nursery.start_soon(self._still_alive_loop)
        nursery.start_soon(self._blacklist_loop)
        nursery.start_soon(self._prune_loop)
        return port

    # -- actions ---------------------------------------------------------------------------

    async def _install_cert(self) -> None:
        """``get_cert``, load it into a new ``SSLContext`` in a worker thread, then swap that in
        here on the Trio thread (:class:`~hathd.hath.tls.CertHolder`).

        :raises NodeError: the PKCS#12 is unusable (bad blob, key/certificate mismatch,
            expiring within 24 h) or cannot be saved; the current certificate stays in use.
        :raises RpcUnavailable: the control server is unreachable.
        """
        body = await self.rpc.raw("get_cert")
        try:
            prepared = await trio.to_thread.run_sync(
                self.certs.prepare, body, self.creds.client_key
            )
        except p.ProtocolError as exc:
            raise NodeError(f"get_cert: {exc}") from None
        except OSError as exc:
            raise NodeError(f"get_cert: cannot save the certificate: {exc}") from None
        info = self.certs.swap(prepared)
        if self.processes is not None:
            self.processes.push_soon()
        self._publish("cert", serial=format(info.serial, "x"), not_after=info.not_after.isoformat())

    async def refresh_settings(self) -> None:
        """``client_settings`` and apply the reply (servercmd ``refresh_settings``)."""
        reply = await self.rpc.call("client_settings")
        if reply.ok:
            self.apply_settings(reply.settings())
            self._publish("settings", throttle_bytes=self.throttle.rate)

    def request_cert_refresh(self) -> None:
        """Schedule a certificate reload (servercmd ``refresh_certs``); coalesced."""
        if self._cert_requests is not None:
            try:
                self._cert_requests.send_nowait(None)
            except trio.WouldBlock:
                pass

    async def _cert_loop(self, recv: trio.MemoryReceiveChannel[None]) -> None:
        async with recv:
            async for _ in recv:
                while True:
                    try:
                        await self._install_cert()
                        break
                    except (RpcUnavailable, NodeError) as exc:
                        log.warning("certificate refresh failed, retrying in 10 s: %s", exc)
                        await trio.sleep(CERT_RETRY)

    def start_downloader(self, additional: str) -> None:
        """servercmd ``start_downloader``: record it and call
        ``on_start_downloader`` (no arguments; it may return an awaitable,
        which runs in the node's nursery)."""
        self.downloader_requests.append(additional)
        self._publish("start_downloader", additional=additional)
        callback = self.on_start_downloader
        if callback is None:
            return
        result = callback()
        if inspect.isawaitable(result) and self._nursery is not None:

            async def run() -> None:
                try:
                    await result
                except Exception:
                    log.exception("start_downloader callback failed")

            self._nursery.start_soon(run)

    def _overload(self) -> None:
        self._publish("overload", open=self.server.open if self.server else 0)
        if self._nursery is not None:
            self._nursery.start_soon(self._call_quietly, "overload", "")

    async def _call_quietly(self, act: str, add: str) -> p.RpcReply | None:
        try:
            return await self.rpc.call(act, add)
        except RpcUnavailable as exc:
            log.warning("RPC %s failed: %s", act, exc)
            return None

    async def process_blacklist(self, delta: int) -> int:
        """``get_blacklist(<delta>)`` and delete each listed fileid (§1.3); returns the count."""
        reply = await self._call_quietly("get_blacklist", str(delta))
        if reply is None or not reply.ok or self.cache is None:
            return 0
        removed = await self.cache.delete(reply.nonempty_lines(), reason="blacklist")
        self._publish("blacklist", listed=len(reply.nonempty_lines()), removed=removed)
        return removed

    async def prune_now(self) -> tuple[int, int]:
        """Run the pruner once for the current limits; returns ``(files, bytes)`` freed."""
        if self.cache is None:
            return 0, 0
        limit = self.disk_limit()
        min_free = max(self.cfg.min_free_bytes, self.settings.diskremaining_bytes)
        free = (await trio.to_thread.run_sync(shutil.disk_usage, self.cache_root)).free
        if not limit:
            limit = self.cache.used_with_overhead() + max(0, free - min_free)
        files, freed = await self.cache.prune(limit, free_disk=free, min_free=min_free)
        if files:
            self._publish("prune", files=files, bytes=freed, limit=limit)
        return files, freed

    # -- loops -----------------------------------------------------------------------------

    async def _still_alive_loop(self) -> None:
        while True:
            await trio.sleep(self.cfg.still_alive_interval)
            reply = await self._call_quietly("still_alive", "")
            self.still_alive_sent += 1
            if reply is None:
                continue
            if reply.failed_with("TERM_BAD_NETWORK") or reply.failed_with("FAIL_NOT_LOGGED_IN"):
                log.error("still_alive: %s; stopping the H@H node", reply.status)
                self.state = "terminated"
                self.reason = f"still_alive: {reply.status}"
                self._publish("terminated", status=reply.status)
                assert self._nursery is not None
                self._nursery.cancel_scope.cancel()
                return
            if not reply.ok:
                log.warning("still_alive: %s", reply.status)
                self._publish(
                    "warning", status=reply.status, message=f"still_alive: {reply.status}"
                )

    async def _blacklist_loop(self) -> None:
        while True:
            await trio.sleep(self.cfg.blacklist_interval)
            await self.process_blacklist(BLACKLIST_PERIODIC)

    async def _prune_loop(self) -> None:
        while True:
            try:
                await self.prune_now()
            except OSError as exc:
                log.warning("pruning failed: %s", exc)
            await trio.sleep(self.cfg.prune_interval)

    def _check_clock_and_cert(self) -> None:
        """Every ~5 min (J162 main loop ``%30==1``): warn on a clock off by more than 24 h;
        a certificate expiring within 24 h triggers a refresh (Java would exit instead)."""
        if abs(self.clock.offset) > 86400:
            log.warning("local clock is off by %d s from the H@H server", self.clock.offset)
        info = self.certs.info
        if info is not None and expires_soon(info):
            log.error("the H@H certificate expires at %s; refreshing it", info.not_after)
            self.request_cert_refresh()

    async def _housekeeping(self) -> None:
        cycle = 0
        while True:
            await trio.sleep(CYCLE)
            cycle += 1
            if self.cache is not None:
                self.cache.lru.cycle()
            if self.server is not None and cycle % 6 == 2:
                self.server.flood.prune(trio.current_time())
            if cycle % 30 == 1:
                self._check_clock_and_cert()
            if cycle % 1440 == 1439:
                self.rpc.clear_failed()


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
