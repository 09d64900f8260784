"""The srfetch proxy: a cache miss is fetched once and streamed to every waiting client.

Flow (docs/hath-protocol.md §3.4; J162 ``ProxyFileDownloader``, RS single-flight):

1. ``srfetch`` with ``<fileindex>;<xres>;<fileid>``; a failed RPC or an empty URL list → 404.
2. Try each URL in order (``max(3, len(urls))`` tries in all, cycling through the list, each
   resuming with ``Range: bytes=<received>-`` from the bytes already received, as RS does) with
   ``Hath-Request: <cid>-<sha1(key + fileid)>`` and the H@H ``User-Agent``. A source is
   rejected, and the next one tried, when its URL is malformed, its status is not 200/206, or
   its ``Content-Length`` is missing, above ``max_allowed_filesize`` or not the fileid's size
   (a 206 must carry the rest of the file, a 200 the whole file, whose first bytes are then
   skipped); if no source was ever accepted → 502.
3. Bytes go to ``cache/.tmp/proxyfile_*`` while the SHA-1 is computed inline. Readers
   (:class:`Flight`) follow the progress and ``pread`` the same file descriptor; the chunk
   being written is handed to them from memory the moment it arrives (before its write to
   the temp file returns), so a client's first bytes wait for no disk write or thread trip.
   The **last
   byte is held back** until the SHA-1 and size match, so a corrupt body is never delivered
   whole: the client sees a short read and the file never enters the cache.
4. On a match the file is fsynced and renamed into the cache (:meth:`Cache.import_verified`);
   otherwise it is deleted.

Single-flight: one :class:`Flight` per fileid, shared by every concurrent request (N requests →
1 srfetch and 1 upstream download). The fetch runs in the proxy's own nursery, so it finishes
(and fills the cache) even if every client goes away.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import httpx
import trio

from hathd.hath import protocol as p
from hathd.hath.cache import Cache
from hathd.hath.limits import FlightFailed

log = logging.getLogger(__name__)

TOTAL_TIMEOUT = 300.0
"""Upper bound (seconds) of one upstream download (J162: 300 s; §3.4)."""
TRIES = 3

RpcCall = Callable[[str, str], Awaitable[p.RpcReply]]


class FlightState(enum.Enum):
    """The life of one proxied download."""

    PENDING = "pending"
    STREAMING = "streaming"
    DONE = "done"
    FAILED = "failed"


@attrs.define(eq=False)
class Flight:
    """One in-flight download shared by every reader of that fileid."""

    fid: p.FileId
    state: FlightState = FlightState.PENDING
    status: int = 0
    """The HTTP status to answer with if the flight failed before streaming (404/502)."""
    written: int = 0
    """Bytes on disk in the temp file (and hashed)."""
    recent: bytes = b""
    """The chunk being written, at offset :attr:`written`: readers take it from memory."""
    verified: bool = False
    fd: int | None = None
    readers: int = 0
    upstream_requests: int = 0
    tmp: Path | None = None
    _changed: trio.Event = attrs.field(factory=trio.Event)
    _closed: bool = False

    def notify(self) -> None:
        """Wake every reader waiting for progress."""
        self._changed.set()
        self._changed = trio.Event()

    def available(self) -> int:
        """Bytes readers may take: all once verified, else all received (on disk or in
        :attr:`recent`) but the last byte."""
        if self.state is FlightState.DONE and self.verified:
            return self.fid.size
        return min(self.written + len(self.recent), max(0, self.fid.size - 1))

    def stage(self, chunk: bytes) -> None:
        """``chunk`` arrived for offset :attr:`written`: readers may take it from memory now."""
        self.recent = chunk
        self.notify()

    def commit(self) -> None:
        """The staged chunk is on disk."""
        self.written += len(self.recent)
        self.recent = b""

    def from_memory(self, n: int, offset: int) -> bytes | None:
        """Up to ``n`` bytes at ``offset`` if they are in the staged chunk, else ``None`` (they
        are on disk: :meth:`pread`)."""
        start = offset - self.written
        if self.recent and 0 <= start < len(self.recent):
            return self.recent[start : start + n]
        return None

    async def wait_started(self) -> int | None:
        """Wait until the body starts streaming (``None``) or the flight fails (its status)."""
        while self.state is FlightState.PENDING:
            await self._changed.wait()
        if self.state is FlightState.FAILED and self.written == 0:
            return self.status or 502
        return None

    async def wait_beyond(self, offset: int) -> int:
        """Wait until more than ``offset`` bytes are available; return the available count.

        :raises FlightFailed: the download failed (or the body was corrupt) before that.
        """
        while self.available() <= offset:
            if self.state is FlightState.FAILED or (
                self.state is FlightState.DONE and not self.verified
            ):
                raise FlightFailed(str(self.fid))
            if self.state is FlightState.DONE:
                break
            await self._changed.wait()
        return self.available()

    def pread(self, n: int, offset: int) -> bytes:
        """Read ``n`` bytes at ``offset`` from the temp file (blocking; use a worker thread)."""
        assert self.fd is not None
        return os.pread(self.fd, n, offset)

    def close_if_idle(self) -> None:
        """Close the descriptor once the download ended and no reader holds it."""
        finished = self.state in (FlightState.DONE, FlightState.FAILED)
        if finished and self.readers <= 0 and self.fd is not None and not self._closed:
            self._closed = True
            os.close(self.fd)
            self.fd = None


@attrs.frozen
class ProxyStatistics:
    """Counters: flights started, joined (a request that found one in flight), upstream
    requests, imported files, failed flights, bytes received, in flight now."""

    flights: int
    joined: int
    upstream_requests: int
    imported: int
    failed: int
    bytes_received: int
    in_flight: int


class SrfetchProxy:
    """Runs proxied downloads; see the module docstring.

    ``rpc`` sends an RPC action and returns the parsed reply (normally
    :meth:`RpcClient.call`); ``http`` is the client for upstream image servers;
    ``idle_timeout`` is the read timeout in seconds; ``max_size`` in bytes.
    """

    def __init__(
        self,
        cache: Cache,
        rpc: RpcCall,
        creds: p.Credentials,
        *,
        http: httpx.AsyncClient | None = None,
        idle_timeout: float = 30.0,
        max_size: int = 1024**3,
    ) -> None:
        self.cache = cache
        self.rpc = rpc
        self.creds = creds
        self.max_size = max_size
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(idle_timeout, connect=5.0),
            headers={"User-Agent": p.USER_AGENT},
        )
        self._flights: dict[str, Flight] = {}
        self._nursery: trio.Nursery | None = None
        self._flight_count = 0
        self._joined = 0
        self._upstream = 0
        self._imported = 0
        self._failed = 0
        self._bytes = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the nursery the downloads run in; ready at once; runs until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            if self._own_http:
                with trio.CancelScope(shield=True):
                    await self.http.aclose()

    def statistics(self) -> ProxyStatistics:
        """Current counters."""
        return ProxyStatistics(
            flights=self._flight_count,
            joined=self._joined,
            upstream_requests=self._upstream,
            imported=self._imported,
            failed=self._failed,
            bytes_received=self._bytes,
            in_flight=len(self._flights),
        )

    def join(self, fid: p.FileId, fileindex: str, xres: str) -> Flight:
        """The flight for ``fid``, started if none runs. The caller must :meth:`release` it.

        :raises RuntimeError: the proxy is not serving.
        """
        key = str(fid)
        flight = self._flights.get(key)
        if flight is None:
            if self._nursery is None:
                raise RuntimeError("srfetch proxy is not running")
            flight = Flight(fid)
            self._flights[key] = flight
            self._flight_count += 1
            self._nursery.start_soon(self._run, flight, fileindex, xres)
        else:
            self._joined += 1
        flight.readers += 1
        return flight

    def release(self, flight: Flight) -> None:
        """A reader is done with ``flight``."""
        flight.readers -= 1
        flight.close_if_idle()

    async def _run(self, flight: Flight, fileindex: str, xres: str) -> None:
        try:
            await self._fetch(flight, fileindex, xres)
        except Exception as exc:  # contained: one failed download never stops the proxy
            log.warning("srfetch of %s failed: %s", flight.fid, exc)
            if flight.state is not FlightState.DONE:
                flight.state = FlightState.FAILED
                flight.status = flight.status or 502
        finally:
            # leave the single-flight map first: a request arriving from now on starts afresh
            self._flights.pop(str(flight.fid), None)
            ok = flight.state is FlightState.DONE and flight.verified
            if not ok:
                self._failed += 1
                flight.state = FlightState.FAILED
            flight.notify()
            flight.close_if_idle()
            if not ok and flight.tmp is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(_unlink, flight.tmp)

    async def _fetch(self, flight: Flight, fileindex: str, xres: str) -> None:
        fid = flight.fid
        try:
            reply = await self.rpc("srfetch", p.srfetch_add(fileindex, xres, str(fid)))
        except Exception as exc:
            log.warning("srfetch RPC for %s failed: %s", fid, exc)
            reply = p.RpcReply("", ())
        urls = reply.nonempty_lines() if reply.ok else []
        if not urls:
            flight.status = 404
            flight.state = FlightState.FAILED
            return
        tmp = flight.tmp = self.cache.new_temp_path()
        # created on the Trio thread: a new empty file in cache/.tmp is a metadata change in
        # memory, cheaper than the thread trip that would sit before the first upstream byte
        flight.fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        sha = hashlib.sha1()
        with trio.move_on_after(TOTAL_TIMEOUT):
            for attempt in range(max(TRIES, len(urls))):
                url = urls[attempt % len(urls)]
                try:
                    await self._download(flight, url, sha)
                except (httpx.HTTPError, httpx.InvalidURL, OSError, _Rejected) as exc:
                    log.info("upstream %s for %s: %s", url, fid, exc)
                    continue
                if flight.written >= fid.size:
                    break
        if flight.written != fid.size or sha.hexdigest() != fid.hash:
            log.warning("srfetch of %s: got %d bytes, hash mismatch or short", fid, flight.written)
            flight.status = 502
            return
        fd = flight.fd
        await trio.to_thread.run_sync(os.fsync, fd)
        await self.cache.import_verified(tmp, fid)
        self._imported += 1
        flight.verified = True
        flight.state = FlightState.DONE

    async def _download(self, flight: Flight, url: str, sha: hashlib._Hash) -> None:
        fid = flight.fid
        headers = {"Hath-Request": p.hath_request_header(self.creds, str(fid))}
        if flight.written:
            headers["Range"] = f"bytes={flight.written}-"
        self._upstream += 1
        flight.upstream_requests += 1
        async with self.http.stream("GET", url, headers=headers) as r:
            length = r.headers.get("content-length")
            if r.status_code == 206 and flight.written:
                skip = 0
                expect = fid.size - flight.written
            elif r.status_code == 200:
                skip = flight.written
                expect = fid.size
            else:
                raise _Rejected(f"HTTP {r.status_code}")
            if length is None or not length.isdigit():
                raise _Rejected("no Content-Length")
            if int(length) > self.max_size or int(length) != expect:
                raise _Rejected(f"Content-Length {length}, want {expect}")
            if flight.state is FlightState.PENDING:
                flight.state = FlightState.STREAMING
                flight.notify()
            fd = flight.fd
            assert fd is not None
            async for chunk in r.aiter_raw():
                if skip:
                    drop = min(skip, len(chunk))
                    chunk = chunk[drop:]
                    skip -= drop
                if not chunk:
                    continue
                if flight.written + len(chunk) > fid.size:
                    raise _Rejected("upstream sent more than Content-Length")
                flight.stage(chunk)
                try:
                    await trio.to_thread.run_sync(os.pwrite, fd, chunk, flight.written)
                except OSError as exc:
                    # readers may have taken the staged chunk: no other source may replace it
                    raise TempFileFailed(f"writing {flight.tmp}: {exc}") from exc
                sha.update(chunk)
                flight.commit()
                self._bytes += len(chunk)
                flight.notify()


class _Rejected(Exception):
    """An upstream source was rejected (status, length)."""


class TempFileFailed(Exception):
    """The temp file could not be written: the flight fails (no other source is tried)."""


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
