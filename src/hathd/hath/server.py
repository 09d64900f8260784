"""The H@H image server: HTTPS on Trio with one request per connection.

Why not hypercorn: the H@H network expects the official client's bytes — a garbage request line
gets ``An error has occurred. (400)`` with the official headers, a blocked IP is refused before
the TLS handshake, and every connection carries exactly one request (docs/hath-protocol.md §3.1,
§7). A small Trio shell around the sans-IO :mod:`hathd.hath.wire` does all three. It also does
less work per request than hypercorn's Trio worker: ~0.4× nginx on this load
(docs/perf-hath.md, which also gives hypercorn's figure).

Connection life:

1. accept; admission (§7): during start-up only RPC-server IPs; then, unless the source is
   exempt (RPC IPs and local addresses), flood control and the connection cap (over the cap:
   reset; over 0.8 × cap: ``overload`` notice at most every 30 s);
2. TLS handshake and request head within ``request_timeout`` seconds, on the ``SSLContext``
   that ``tls_context()`` returns when the connection is accepted (the node passes
   :attr:`CertHolder.context <hathd.hath.tls.CertHolder.context>`, so a certificate swap
   applies to the next connection);
3. route: ``/h/``, ``/servercmd/``, ``/t/``, ``/robots.txt``, ``/favicon.ico``, else 404;
4. write the response through the global throttle (non-exempt sources only) and close.

Per-connection errors are logged and contained; they never reach the accept loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import socket
import ssl
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from hathd.hath import hitread, wire
from hathd.hath import protocol as p
from hathd.hath.limits import (
    FlightFailed,
    FloodControl,
    OverloadNotice,
    UploadThrottle,
    is_local,
)
from hathd.hath.pruning import needs_touch
from hathd.hath.tlssock import TLSSocketStream
from hathd.metrics import observe_hath_request

if TYPE_CHECKING:
    import httpx

    from hathd.hath.proxy import Flight, SrfetchProxy

log = logging.getLogger(__name__)

WHOLE_READ_LIMIT = 2 * 1024 * 1024
"""Bodies up to this size (bytes) are read in one worker-thread trip (docs/perf-hath.md);
larger ones stream in :data:`CHUNK` pieces, bounding memory per connection."""
CHUNK = 1024 * 1024
ACCEPT_BATCH = 16
"""Connections accepted in a row before the accept loop lets other tasks run."""
LIFETIME = 180.0
SERVERCMD_LIFETIME = 1800.0
STILL_ALIVE_TEXT = b"I feel FANTASTIC and I'm still alive"
FAVICON = "https://e-hentai.org/favicon.ico"
ROBOTS = b"User-agent: *\nDisallow: /"
_SENT: ContextVar[list[int] | None] = ContextVar("hath_request_sent", default=None)
"""Bytes sent for the request the current connection task serves (for the metrics)."""
_SAFE_NAME = re.compile(r"^[\w.\- ()\[\]]{1,255}$")


class Stream(Protocol):
    """What a response is written to: a client's :class:`TLSSocketStream`, or the unix-socket
    stream of a request forwarded by a serving process (:mod:`hathd.hath.workers`)."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None: ...

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray: ...


class HitCache(Protocol):
    """The part of :class:`~hathd.hath.cache.Cache` the image server uses (a serving process
    has a stand-in that asks the owner of the index to delete or touch files)."""

    def path_of(self, fid: p.FileId) -> Any: ...

    def hit_path(self, fid: p.FileId) -> str: ...

    def stat_hit(self, fid: p.FileId) -> os.stat_result | None: ...

    def mark_accessed(self, fid: p.FileId, now: float) -> tuple[bool, bool]: ...

    async def delete(self, fileids: list[str], *, reason: str = "delete") -> int: ...

    async def touch_if_old(self, fid: p.FileId, mtime: float) -> None: ...


Forward = Callable[[TLSSocketStream, bytes, str, bool], Awaitable[None]]
"""``forward(stream, raw_head, ip, metered)``: hand a request to the process that owns the
cache index and relay its response (serving processes only)."""


@attrs.define
class ServerPolicy:
    """What the keeper decides and the server enforces (updated live)."""

    rpc_ips: set[str] = attrs.field(factory=set)
    own_host: str | None = None
    ip_origin_check: bool = True
    flood_control: bool = True
    local_exempt: bool = True
    """Local sources skip caps, flood control and the throttle (official); tests turn it off."""
    max_connections: int = 20
    verify_on_serve: bool = True
    request_timeout: float = 10.0
    startup_only: bool = True
    """Until ``client_start`` succeeds only RPC-server IPs may connect (§5)."""


@attrs.define
class ServerHooks:
    """Callbacks into the keeper (all optional)."""

    refresh_settings: Callable[[], Awaitable[None]] | None = None
    refresh_certs: Callable[[], None] | None = None
    start_downloader: Callable[[str], None] | None = None
    overload: Callable[[], None] | None = None


@attrs.frozen
class ServerStatistics:
    """Counters of the image server; ``statuses`` maps HTTP status → responses."""

    open_connections: int
    accepted: int
    refused: int
    hits: int
    misses: int
    bytes_sent: int
    statuses: dict[int, int]
    overload_notices: int
    flood_blocked: int
    forwarded: int = 0
    """Requests a serving process handed to the owner of the index (:mod:`hathd.hath.workers`)."""

    def plus(self, other: ServerStatistics) -> ServerStatistics:
        """The sum of two processes' counters."""
        statuses = Counter(self.statuses)
        statuses.update(other.statuses)
        return ServerStatistics(
            open_connections=self.open_connections + other.open_connections,
            accepted=self.accepted + other.accepted,
            refused=self.refused + other.refused,
            hits=self.hits + other.hits,
            misses=self.misses + other.misses,
            bytes_sent=self.bytes_sent + other.bytes_sent,
            statuses=dict(statuses),
            overload_notices=self.overload_notices + other.overload_notices,
            flood_blocked=self.flood_blocked + other.flood_blocked,
            forwarded=self.forwarded + other.forwarded,
        )


class ImageServer:
    """Serves the cache over HTTPS; see the module docstring. ``tls_context()`` gives the
    ``SSLContext`` for each new connection (called on the Trio thread, once per accept)."""

    def __init__(
        self,
        *,
        creds: p.Credentials,
        clock: p.ServerClock,
        cache: HitCache,
        proxy: SrfetchProxy | None,
        tls_context: Callable[[], ssl.SSLContext],
        policy: ServerPolicy | None = None,
        hooks: ServerHooks | None = None,
        throttle: UploadThrottle | None = None,
        forward: Forward | None = None,
    ) -> None:
        self.creds = creds
        self.clock = clock
        self.cache = cache
        self.proxy = proxy
        self.forward = forward
        """Set in a serving process: misses and every route but ``/h/`` hits go to the owner."""
        self.peer_statistics: Callable[[], list[ServerStatistics]] = list
        """The latest counters of the serving processes (set by the owner; summed in
        :meth:`statistics`)."""
        self.observe: Callable[[str, float, int], None] = observe_hath_request
        """Where per-request metrics go (a serving process batches them to the owner)."""
        self._forwarded = 0
        self.tls_context = tls_context
        self.policy = policy or ServerPolicy()
        self.hooks = hooks or ServerHooks()
        self.throttle = throttle or UploadThrottle(0)
        self.flood = FloodControl()
        self.overload = OverloadNotice()
        self.port = 0
        self.open = 0
        self._accepted = 0
        self._refused = 0
        self._hits = 0
        self._misses = 0
        self._sent = 0
        self._statuses: Counter[int] = Counter()
        self._random_block = os.urandom(64 * 1024)
        self._buffers = hitread.BufferPool()
        self._nursery: trio.Nursery | None = None

    def statistics(self) -> ServerStatistics:
        """Current counters, summed over this process and the serving processes."""
        total = self.own_statistics()
        for peer in self.peer_statistics():
            total = total.plus(peer)
        return total

    def own_statistics(self) -> ServerStatistics:
        """Current counters of this process alone."""
        return ServerStatistics(
            open_connections=self.open,
            accepted=self._accepted,
            refused=self._refused,
            hits=self._hits,
            misses=self._misses,
            bytes_sent=self._sent,
            statuses=dict(self._statuses),
            overload_notices=self.overload.sent,
            flood_blocked=self.flood.blocked_total,
            forwarded=self._forwarded,
        )

    def server_time(self) -> int:
        return self.clock.server_time(time.time())

    # -- accept & admission ------------------------------------------------------------------

    async def serve(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0 = any free port) and serve until cancelled; reports the
        bound port through ``task_status``. ``reuse_port`` sets ``SO_REUSEPORT``, so serving
        processes can bind the same port and the kernel spreads connections over them.

        :raises OSError: the port cannot be bound.
        """
        listeners = await _listen(host, port, reuse_port)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, nursery)
            task_status.started(self.port)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        """Accept connections on ``listener`` until cancelled.

        The listening socket leaves Trio's wrapper: connections are accepted with the stdlib
        ``accept`` on the non-blocking socket, as many as are queued per wake-up (at most
        :data:`ACCEPT_BATCH` before a schedule point), and Trio is asked to wait only when the
        queue is empty. Each accepted connection costs no wrapper object, no ``detach`` and no
        extra schedule point (docs/perf-hath.md, "Third pass")."""
        trio_sock = listener.socket
        lsock = socket.socket(
            trio_sock.family, trio_sock.type, trio_sock.proto, fileno=trio_sock.detach()
        )
        lsock.setblocking(False)
        batch = 0
        try:
            while True:
                try:
                    sock, addr = lsock.accept()
                except BlockingIOError:
                    batch = 0
                    await trio.lowlevel.wait_readable(lsock)
                    continue
                except OSError as exc:  # EMFILE and friends: back off, keep the listener
                    log.warning("accept failed: %s", exc)
                    await trio.sleep(0.1)
                    continue
                ip = str(addr[0])
                if ip.startswith("::ffff:"):
                    ip = ip[7:]
                verdict = self.admit(ip, trio.current_time())
                if verdict is None:
                    self._refused += 1
                    _reset(sock)
                    sock.close()
                else:
                    self._accepted += 1
                    self.open += 1
                    nursery.start_soon(self._connection, sock, ip, verdict)
                batch += 1
                if batch >= ACCEPT_BATCH:
                    batch = 0
                    await trio.lowlevel.checkpoint()
        finally:
            trio.lowlevel.notify_closing(lsock)
            lsock.close()
            trio_sock.close()  # detached: releases nothing but the wrapper

    def admit(self, ip: str, now: float) -> bool | None:
        """Admission decision for a new connection from ``ip`` at ``now`` (seconds):
        ``None`` = refuse, else whether the connection is metered (not exempt)."""
        pol = self.policy
        rpc = ip in pol.rpc_ips
        if pol.startup_only:
            return False if rpc else None
        exempt = rpc or (pol.local_exempt and is_local(ip, pol.own_host))
        if exempt:
            return False
        if pol.flood_control and not self.flood.admit(ip, now):
            return None
        if self.open >= pol.max_connections:
            return None
        notify = self.overload.should_notify(self.open + 1, pol.max_connections, now)
        if notify and self.hooks.overload is not None:
            self.hooks.overload()
        return True

    # -- one connection ----------------------------------------------------------------------

    async def _connection(self, sock: socket.socket, ip: str, metered: bool) -> None:
        clean = False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream = TLSSocketStream(sock, self.tls_context())
        except (OSError, ssl.SSLError):
            self.open -= 1
            sock.close()
            return
        try:
            head: wire.RequestHead | None = None
            error: wire.HttpError | None = None
            raw = b""
            with trio.move_on_after(self.policy.request_timeout):
                await stream.do_handshake()
                try:
                    got = await read_head(stream)
                except wire.HttpError as exc:
                    error = exc
                else:
                    if got is not None:
                        head, raw = got
            if error is not None:
                await self._send_error(stream, error.status, error.extra, metered)
                clean = True
            elif head is not None:
                await self.serve_request(stream, head, ip, metered, raw=raw, tls=stream)
                clean = True
        except (trio.BrokenResourceError, trio.ClosedResourceError, FlightFailed):
            pass
        except Exception:
            log.exception("connection from %s failed", ip)
        finally:
            self.open -= 1
            stream.close(notify=clean)

    async def serve_request(
        self,
        stream: Stream,
        head: wire.RequestHead,
        ip: str,
        metered: bool,
        *,
        raw: bytes = b"",
        tls: TLSSocketStream | None = None,
    ) -> None:
        """Answer one parsed request within the connection lifetime (180 s; 1800 s for
        ``/servercmd/``, J162 ``doTimeoutCheck``) and record its metrics. ``raw`` and ``tls``
        (the head's bytes and the client connection) let a serving process forward it.
        The owner calls this for requests that serving processes forward."""
        limit = SERVERCMD_LIFETIME if head.path.startswith("/servercmd/") else LIFETIME
        began, counted = trio.current_time(), [0]
        token = _SENT.set(counted)
        forwarded = False
        try:
            with trio.move_on_after(limit):
                if self.forward is not None and tls is not None:
                    if not await self._serve_local(tls, head, metered):
                        forwarded = True
                        self._forwarded += 1
                        await self.forward(tls, raw, ip, metered)
                else:
                    await self._dispatch(stream, head, ip, metered)
        finally:
            if not forwarded:  # a forwarded request is recorded by the owner, which served it
                route = head.parts[1] if len(head.parts) > 1 else ""
                self.observe(route, trio.current_time() - began, counted[0])
            _SENT.reset(token)

    async def _serve_local(
        self, stream: TLSSocketStream, head: wire.RequestHead, metered: bool
    ) -> bool:
        """In a serving process: answer ``/h/`` hits (and every refusal before the cache is
        looked at) here; ``False`` for what only the owner of the index can answer."""
        parts = head.parts
        if len(parts) < 2 or parts[1] != "h":
            return False
        return await self._h(stream, head, metered, local_only=True)

    async def _send(
        self, stream: Stream, data: bytes | bytearray | memoryview, metered: bool
    ) -> None:
        view = memoryview(data)
        step = 64 * 1024 if metered and self.throttle.rate > 0 else len(data) or 1
        for start in range(0, len(data), step):
            piece = view[start : start + step]
            if metered:
                delay = self.throttle.delay(len(piece), trio.current_time())
                if delay > 0:
                    await trio.sleep(delay)
            await stream.send_all(piece)
            self._sent += len(piece)
            if (counted := _SENT.get()) is not None:
                counted[0] += len(piece)

    async def _send_error(
        self,
        stream: Stream,
        status: int,
        extra: tuple[tuple[str, str], ...] = (),
        metered: bool = False,
        head_only: bool = False,
    ) -> None:
        self._statuses[status] += 1
        await self._send(
            stream, wire.error_response(status, time.time(), extra, head_only=head_only), metered
        )

    async def _dispatch(
        self,
        stream: Stream,
        head: wire.RequestHead,
        ip: str,
        metered: bool,
    ) -> None:
        parts = head.parts
        first = parts[1] if len(parts) > 1 else ""
        if first == "h":
            await self._h(stream, head, metered)
        elif first == "servercmd":
            await self._servercmd(stream, head, ip, metered)
        elif first == "t":
            await self._speedtest(stream, head, metered)
        elif head.path == "/robots.txt":
            await self._text(stream, head, 200, ROBOTS, wire.ROBOTS_TYPE, metered)
        elif head.path == "/favicon.ico":
            self._statuses[301] += 1
            await self._send(
                stream,
                wire.response_head(
                    301,
                    content_type=wire.TEXT_TYPE,
                    length=0,
                    now=time.time(),
                    extra=(("Location", FAVICON),),
                ),
                metered,
            )
        else:
            await self._send_error(stream, 404, metered=metered, head_only=head.head_only)

    async def _text(
        self,
        stream: Stream,
        head: wire.RequestHead,
        status: int,
        body: bytes,
        ctype: str,
        metered: bool,
    ) -> None:
        self._statuses[status] += 1
        data = wire.response_head(status, content_type=ctype, length=len(body), now=time.time())
        await self._send(stream, data if head.head_only else data + body, metered)

    # -- /h/ --------------------------------------------------------------------------------

    async def _h(
        self, stream: Stream, head: wire.RequestHead, metered: bool, *, local_only: bool = False
    ) -> bool:
        """``/h/``: keystamp and fileid checks, then a hit, else a miss through the proxy.
        With ``local_only`` (a serving process) a miss is not served: returns ``False``."""
        parts = head.parts
        if len(parts) < 4:
            await self._send_error(stream, 400, metered=metered, head_only=head.head_only)
            return True
        fid_s, add = parts[2], p.parse_additional(parts[3])
        if not p.check_keystamp(
            add.get("keystamp"), fid_s, self.creds.client_key, self.server_time()
        ):
            await self._send_error(stream, 403, metered=metered, head_only=head.head_only)
            return True
        fid = p.FileId.try_parse(fid_s)
        fileindex = add.get("fileindex", "")
        xres = add.get("xres", "")
        if fid is None or not fileindex.isdigit() or not (xres == "org" or xres.isdigit()):
            await self._send_error(stream, 404, metered=metered, head_only=head.head_only)
            return True
        filename = parts[4] if len(parts) > 4 else ""
        extra: list[tuple[str, str]] = [
            ("ETag", wire.etag_for(fid.hash)),
            ("Accept-Ranges", "bytes"),
        ]
        if filename and _SAFE_NAME.match(filename):
            extra.append(("Content-Disposition", f'inline; filename="{filename}"'))
        plain = not head.head_only and not ({"range", "if-none-match"} & head.headers.keys())
        if plain and fid.size <= WHOLE_READ_LIMIT:
            if await self._fast_hit(stream, fid, tuple(extra), metered):
                return True
        else:
            st = await trio.to_thread.run_sync(self.cache.stat_hit, fid)
            if st is not None and await self._hit(stream, head, fid, st, tuple(extra), metered):
                return True
        if local_only:
            return False
        await self._miss(stream, head, fid, fileindex, xres, tuple(extra), metered)
        return True

    async def _fast_hit(
        self,
        stream: Stream,
        fid: p.FileId,
        extra: tuple[tuple[str, str], ...],
        metered: bool,
    ) -> bool:
        """A plain GET of a file up to 2 MiB. Unverified: read on the Trio thread from the page
        cache, the rest (a cold file) in one worker-thread trip (:mod:`hathd.hath.hitread`).
        Verified (first serve in a while): stat, read and SHA-1 in one worker-thread trip.
        ``False`` if it is not cached or turned out corrupt (deleted)."""
        now = time.time()
        _newly, verify = self.cache.mark_accessed(fid, now)
        verify = verify and self.policy.verify_on_serve
        data = wire.response_head(
            200, content_type=fid.mime_type, length=fid.size, now=now, extra=extra, immutable=True
        )
        if verify:
            path = self.cache.path_of(fid)
            loaded = await trio.to_thread.run_sync(_load_whole, path, fid.size, fid.hash)
            if loaded is None:
                return False
            mtime, body, intact = loaded
            if not intact:
                log.warning("cached %s is corrupt; deleting it", fid)
                await self.cache.delete([str(fid)], reason="corrupt")
                return False
            self._hits += 1
            self._statuses[200] += 1
            await self._send(stream, data + body, metered)
        else:
            opened = hitread.open_hit(self.cache.hit_path(fid), fid.size)
            if opened is None:
                return False
            fd, mtime = opened
            try:
                self._hits += 1
                self._statuses[200] += 1
                await self._send_pieces(stream, data, fd, fid.size, metered)
            finally:
                os.close(fd)
        if needs_touch(mtime, now) and self._nursery is not None:
            self._nursery.start_soon(self.cache.touch_if_old, fid, mtime)
        return True

    async def _send_pieces(
        self, stream: Stream, head: bytes, fd: int, size: int, metered: bool
    ) -> None:
        """Send ``head`` then ``size`` bytes of ``fd`` in :data:`hitread.PIECE` pieces through
        a pooled buffer; page-cache reads inline, the rest in a worker thread.

        :raises trio.BrokenResourceError: the file ended early or cannot be read (the head
            is out already, so the connection is cut).
        """
        buf = self._buffers.take()
        try:
            view = memoryview(buf)
            pos = 0
            start = len(head)
            if start >= len(buf):  # a huge head: send it alone
                await self._send(stream, head, metered)
                start = 0
            else:
                buf[:start] = head
            while True:
                n = min(len(buf) - start, size - pos)
                target = view[start : start + n]
                done = hitread.read_cached(fd, target, pos)
                if done < n and not await trio.to_thread.run_sync(
                    hitread.read_rest, fd, target, done, pos
                ):
                    raise trio.BrokenResourceError("cached file shrank or failed while serving")
                await self._send(stream, view[: start + n], metered)
                pos += n
                start = 0
                if pos >= size:
                    break
            del view, target
        finally:
            self._buffers.give(buf)

    async def _hit(
        self,
        stream: Stream,
        head: wire.RequestHead,
        fid: p.FileId,
        st: os.stat_result,
        extra: tuple[tuple[str, str], ...],
        metered: bool,
    ) -> bool:
        """Serve a cached file; ``False`` if it turned out corrupt (deleted; serve as a miss)."""
        etag = wire.etag_for(fid.hash)
        now = time.time()
        if wire.etag_matches(head.headers.get("if-none-match"), etag):
            self._hits += 1
            self._statuses[304] += 1
            await self._send(
                stream,
                wire.response_head(304, content_type=fid.mime_type, length=0, now=now, extra=extra),
                metered,
            )
            return True
        if_range = head.headers.get("if-range")
        range_value = head.headers.get("range") if if_range in (None, etag) else None
        try:
            rng = wire.parse_range(range_value, fid.size)
        except wire.RangeNotSatisfiable:
            await self._send_error(
                stream,
                416,
                (*extra, ("Content-Range", f"bytes */{fid.size}")),
                metered,
                head.head_only,
            )
            return True
        _newly, verify = self.cache.mark_accessed(fid, now)
        verify = verify and self.policy.verify_on_serve and rng is None
        path = self.cache.path_of(fid)
        first, last = rng if rng is not None else (0, fid.size - 1)
        length = last - first + 1 if fid.size else 0
        body = b""
        if (not head.head_only or verify) and length <= WHOLE_READ_LIMIT:
            try:
                body = await trio.to_thread.run_sync(_read_range, path, first, length)
            except OSError:
                await self._send_error(stream, 500, metered=metered, head_only=head.head_only)
                return True
            if len(body) != length:
                return False
            if verify and await trio.to_thread.run_sync(_sha1, body) != fid.hash:
                log.warning("cached %s is corrupt; deleting it", fid)
                await self.cache.delete([str(fid)], reason="corrupt")
                return False
        status = 200
        if rng is not None:
            status = 206
            extra = (*extra, ("Content-Range", f"bytes {first}-{last}/{fid.size}"))
        self._hits += 1
        self._statuses[status] += 1
        data = wire.response_head(
            status, content_type=fid.mime_type, length=length, now=now, extra=extra, immutable=True
        )
        if head.head_only:
            await self._send(stream, data, metered)
        elif body or length == 0:
            await self._send(stream, data + body, metered)
        else:
            await self._send(stream, data, metered)
            digest = await self._stream_file(stream, path, first, length, metered, hash_it=verify)
            if verify and digest != fid.hash:
                # too big to check before sending: delete afterwards, as Java does (§3.3)
                log.warning("cached %s was corrupt; deleting it", fid)
                await self.cache.delete([str(fid)], reason="corrupt")
        if needs_touch(st.st_mtime, now) and self._nursery is not None:
            self._nursery.start_soon(self.cache.touch_if_old, fid, st.st_mtime)
        return True

    async def _stream_file(
        self,
        stream: Stream,
        path: os.PathLike[str],
        offset: int,
        length: int,
        metered: bool,
        *,
        hash_it: bool = False,
    ) -> str | None:
        """Send ``length`` bytes from ``offset`` in :data:`CHUNK` pieces (one worker-thread
        read each); with ``hash_it``, return the SHA-1 of what was sent."""
        hasher = hashlib.sha1() if hash_it else None
        fd = await trio.to_thread.run_sync(os.open, path, os.O_RDONLY)
        try:
            end = offset + length
            while offset < end:
                n = min(CHUNK, end - offset)
                data = await trio.to_thread.run_sync(_pread_hashed, fd, n, offset, hasher)
                if not data:
                    raise trio.BrokenResourceError("file shrank while serving")
                await self._send(stream, data, metered)
                offset += len(data)
        finally:
            os.close(fd)
        return hasher.hexdigest() if hasher is not None else None

    async def _miss(
        self,
        stream: Stream,
        head: wire.RequestHead,
        fid: p.FileId,
        fileindex: str,
        xres: str,
        extra: tuple[tuple[str, str], ...],
        metered: bool,
    ) -> None:
        self._misses += 1
        if self.proxy is None:
            await self._send_error(stream, 404, metered=metered, head_only=head.head_only)
            return
        flight = self.proxy.join(fid, fileindex, xres)
        try:
            failed = await flight.wait_started()
            if failed is not None:
                await self._send_error(stream, failed, metered=metered, head_only=head.head_only)
                return
            response = wire.response_head(
                200,
                content_type=fid.mime_type,
                length=fid.size,
                now=time.time(),
                extra=extra,
                immutable=True,
            )
            if head.head_only:
                self._statuses[200] += 1
                await self._send(stream, response, metered)
                return
            # the head leaves with the first body bytes, as soon as the upstream's first chunk
            # is in: one TLS record, and a source failing before its first byte still gets a
            # clean error reply
            pending: bytes | None = response
            offset = 0
            while offset < fid.size:
                try:
                    available = await flight.wait_beyond(offset)
                except FlightFailed:
                    if pending is None:
                        raise
                    await self._send_error(stream, 502, metered=metered, head_only=False)
                    return
                n = min(CHUNK, available - offset)
                data = _read_flight(flight, n, offset)
                if data is None:
                    data = await trio.to_thread.run_sync(flight.pread, n, offset)
                if not data:
                    raise FlightFailed(str(fid))
                offset += len(data)
                if pending is not None:
                    self._statuses[200] += 1
                    data, pending = pending + data, None
                await self._send(stream, data, metered)
            if pending is not None:  # an empty file
                self._statuses[200] += 1
                await self._send(stream, pending, metered)
        finally:
            self.proxy.release(flight)

    # -- /servercmd/ ------------------------------------------------------------------------

    async def _servercmd(
        self,
        stream: Stream,
        head: wire.RequestHead,
        ip: str,
        metered: bool,
    ) -> None:
        parts = head.parts
        pol = self.policy
        if (pol.ip_origin_check and ip not in pol.rpc_ips) or len(parts) < 6:
            await self._send_error(stream, 403, metered=metered, head_only=head.head_only)
            return
        command, additional, time_s, key = parts[2], parts[3], parts[4], parts[5]
        if not time_s.isdigit() or not p.check_servercmd(
            command, additional, int(time_s), key, self.creds, self.server_time()
        ):
            await self._send_error(stream, 403, metered=metered, head_only=head.head_only)
            return
        cmd = command.lower()
        body = b""
        ctype = wire.TEXT_TYPE
        if cmd == "still_alive":
            body = STILL_ALIVE_TEXT
        elif cmd == "threaded_proxy_test":
            body = (await self._proxy_test(p.parse_additional(additional))).encode("ascii")
        elif cmd == "speed_test":
            size_s = p.parse_additional(additional).get("testsize", "1000000")
            size = int(size_s) if size_s.isdigit() else 1_000_000
            await self._random_body(stream, head, size, metered)
            return
        elif cmd == "refresh_settings":
            if self.hooks.refresh_settings is not None:
                await self.hooks.refresh_settings()
        elif cmd == "start_downloader":
            if self.hooks.start_downloader is not None:
                self.hooks.start_downloader(additional)
        elif cmd == "refresh_certs":
            if self.hooks.refresh_certs is not None:
                self.hooks.refresh_certs()
        else:
            body = b"INVALID_COMMAND"
        await self._text(stream, head, 200, body, ctype, metered)

    async def _proxy_test(self, args: dict[str, str]) -> str:
        """``threaded_proxy_test``: ``testcount`` parallel GETs of the peer's ``/t/`` URL, 10 s
        each; ``OK:<successes>-<sum of ms from first byte to finish>`` (J162, J165f: a success
        needs ≥ testsize bytes; §3.5). Peer certificates are not verified (data is discarded)."""
        try:
            host = args["hostname"]
            proto = args.get("protocol") or "http"
            port = int(args["port"])
            size = int(args["testsize"])
            count = min(int(args["testcount"]), 100)
            ttime = int(args["testtime"])
            tkey = args["testkey"]
        except (KeyError, ValueError):
            return "INVALID_COMMAND"
        import httpx  # only here: serving processes never load the HTTP client

        results: list[int] = []

        async def one(client: httpx.AsyncClient) -> None:
            url = f"{proto}://{host}:{port}/t/{size}/{ttime}/{tkey}/{random.randrange(10**9)}"
            with trio.move_on_after(10):
                try:
                    async with client.stream("GET", url) as r:
                        got = 0
                        began: float | None = None
                        async for chunk in r.aiter_raw():
                            if began is None:
                                began = time.monotonic()
                            got += len(chunk)
                        if r.status_code == 200 and got >= size and began is not None:
                            results.append(int((time.monotonic() - began) * 1000))
                except (httpx.HTTPError, OSError):
                    pass

        async with httpx.AsyncClient(verify=False, timeout=10) as client, trio.open_nursery() as n:
            for _ in range(count):
                n.start_soon(one, client)
        return f"OK:{len(results)}-{sum(results)}"

    # -- /t/ --------------------------------------------------------------------------------

    async def _speedtest(self, stream: Stream, head: wire.RequestHead, metered: bool) -> None:
        parts = head.parts
        if len(parts) < 5 or not parts[2].isdigit() or not parts[3].isdigit():
            await self._send_error(stream, 403, metered=metered, head_only=head.head_only)
            return
        size, ttime, tkey = int(parts[2]), int(parts[3]), parts[4]
        if not p.check_speedtest(size, ttime, tkey, self.creds, self.server_time()):
            await self._send_error(stream, 403, metered=metered, head_only=head.head_only)
            return
        await self._random_body(stream, head, size, metered)

    async def _random_body(
        self,
        stream: Stream,
        head: wire.RequestHead,
        size: int,
        metered: bool,
    ) -> None:
        self._statuses[200] += 1
        await self._send(
            stream,
            wire.response_head(200, content_type=wire.SPEEDTEST_TYPE, length=size, now=time.time()),
            metered,
        )
        if head.head_only:
            return
        block = self._random_block
        left = size
        while left > 0:
            start = random.randrange(len(block) // 2)
            piece = block[start : start + min(left, len(block) // 2)]
            await self._send(stream, piece, metered)
            left -= len(piece)


async def read_head(stream: Stream) -> tuple[wire.RequestHead, bytes] | None:
    """Read up to the blank line: the parsed head and its raw bytes; ``None`` if the peer
    closed first.

    :raises wire.HttpError: over the size limits or malformed.
    """
    buf = bytearray()
    while True:
        end = wire.find_head_end(buf)
        if end >= 0:
            raw = bytes(buf[:end])
            return wire.parse_head(raw), raw
        if len(buf) > wire.MAX_HEAD_BYTES:
            raise wire.HttpError(400)
        try:
            data = await stream.receive_some(16384)
        except trio.BrokenResourceError:
            return None
        if not data:
            return None
        buf += data


def _read_flight(flight: Flight, n: int, offset: int) -> bytes | None:
    """Up to ``n`` bytes of ``flight`` at ``offset`` without a thread trip: from the chunk in
    memory, else from the page cache (``RWF_NOWAIT``); ``None`` when neither holds them."""
    data = flight.from_memory(n, offset)
    if data is not None or flight.fd is None:
        return data
    buf = bytearray(min(n, hitread.PIECE))
    got = hitread.read_cached(flight.fd, memoryview(buf), offset)
    return bytes(buf[:got]) if got else None


def _pread_hashed(fd: int, n: int, offset: int, hasher: Any) -> bytes:
    data = os.pread(fd, n, offset)
    if hasher is not None:
        hasher.update(data)
    return data


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _load_whole(
    path: os.PathLike[str], size: int, want_hash: str | bool
) -> tuple[float, bytes, bool] | None:
    """``(mtime, body, intact)`` of a cached file whose size is ``size``, else ``None``;
    ``intact`` is the SHA-1 check when ``want_hash`` is a hash (blocking)."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_size != size:
                return None
            body = f.read(size)
    except OSError:
        return None
    if len(body) != size:
        return None
    intact = not want_hash or hashlib.sha1(body).hexdigest() == want_hash
    return st.st_mtime, body, intact


def _read_range(path: os.PathLike[str], offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


async def _listen(host: str, port: int, reuse_port: bool) -> list[trio.SocketListener]:
    """Bound, listening sockets for ``host:port`` (backlog 512), as ``trio.open_tcp_listeners``
    makes them, plus ``SO_REUSEPORT`` when ``reuse_port``.

    :raises OSError: nothing could be bound.
    """
    if not reuse_port:
        return await trio.open_tcp_listeners(port, host=host, backlog=512)
    infos = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    listeners = []
    for family, type_, proto, _name, addr in infos[:1]:
        sock = trio.socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            await sock.bind(addr)
            sock.listen(512)
        except OSError:
            sock.close()
            raise
        listeners.append(trio.SocketListener(sock))
    return listeners


def _reset(sock: socket.socket) -> None:
    """Make the close send RST (linger 0), as RS does for refused sources."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
