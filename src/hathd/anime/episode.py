"""The ``anime-episode`` job: resolve a hoster, download the episode, place it in the library.

Job shape (as the anime plugin submits it): ``target`` = the episode page URL,
``domain`` = the provider's domain (the job's politeness lane), ``params``:

- ``series_key`` (str), ``season`` (int >= 0), ``episode`` (int >= 0);
- ``dest`` (str): ``"<Series> (<year>)/Season 01/<Series> - S01E01 - <title>"``, relative to
  the library root, without extension (the real one, e.g. ``.mp4``, is added); no absolute
  path, no ``..``/``.``/empty component, no control character, each component at most
  :data:`~hathd.engine.download.FILENAME_MAX` bytes;
- ``candidates``: ``[{"hoster", "language", "url"}, …]`` in preference order, ``url`` being the
  provider's absolute redirect URL for that hoster.

One try goes through the candidates in order, skipping unknown hosters and hosters in
cool-down (:class:`~hathd.anime.health.HosterHealth`). For a candidate it GETs the provider's
redirect URL (at most :data:`MAX_REDIRECTS` redirects, a loop is reported as such), fetches the
hoster page (and any follow-up a resolver asks for), resolves it (:mod:`hathd.anime.hosters`),
then downloads:

- ``direct``: streamed into the job's hidden part file ``.<name>.<job id>.part`` beside the
  destination; the first response's validator (strong ``ETag``, else a strong
  ``Last-Modified``; RFC 9110 §13.1.5) is saved in the job's checkpoint with the candidate, so a
  later try of the same candidate resumes with ``Range``/``If-Range`` (RFC 9110 §14.2, §13.1.5)
  and appends on a matching ``206`` (§14.4); a ``200`` starts over. A ``text/*``/JSON answer,
  a body whose first bytes are no video container, a body shorter than its
  ``Content-Length``, or an announced size above ``max_bytes`` fails the candidate (nothing
  is preallocated: the part file only grows with bytes that arrived);
- ``hls``: yt-dlp in a worker thread, ffmpeg remuxing to MP4 (:mod:`hathd.anime.hls`); a
  ``direct`` URL that answers an HLS playlist is fetched this way too.

The complete file is fsynced and linked to ``dest + ext`` atomically
(:mod:`hathd.anime.placement`); an episode file already present counts as done. Every request
(provider, hoster, media server) passes the per-domain :class:`~hathd.anime.gate.DomainGate`;
an HLS download holds one slot of its media server for its whole length.

Outcome: success records the hoster's latency in the health table, awaits ``on_landed`` and
returns ``{"path", "size", "hoster", "language", "already_present"}``. A failed candidate
records a health failure (not for local causes such as a missing ffmpeg, nor for failures on
the provider's own domain, i.e. the job's: a provider outage says nothing about the hosters) and
the next one is tried. When all fail: :class:`~hathd.errors.RetryableError` naming every
candidate's reason; :class:`~hathd.errors.PermanentError` when no candidate has a known hoster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import attrs
import httpx
import trio

from hathd.anime import placement
from hathd.anime.gate import DomainGate
from hathd.anime.health import HosterHealth
from hathd.anime.hls import fetch_hls
from hathd.anime.hosters import (
    MAX_FETCH_STEPS,
    MAX_PAGE_BYTES,
    RESOLVERS,
    Fetch,
    HosterError,
    Stream,
    normalize,
    resolve,
)
from hathd.engine.api import InvalidInput, Job, JobContext, JobSpec
from hathd.engine.bulkhttp import bulk_client
from hathd.engine.download import (
    FILENAME_MAX,
    content_range_start,
    resume_validator,
    ssl_context,
)
from hathd.errors import PermanentError, RateLimitedError, RetryableError
from hathd.retryafter import parse_retry_after

KIND = "anime-episode"
MAX_REDIRECTS = 5
"""Redirects followed from one URL (the provider's redirect, a ``get_video`` link)."""
MAX_CANDIDATES = 64
DEFAULT_MAX_BYTES = 16 * 1024**3
"""Largest episode accepted by default, bytes (a larger ``Content-Length`` fails the hoster)."""
WRITE_BUFFER = 1 << 20
"""Bytes gathered before one write of the part file."""
WRITE_INTERVAL = 0.5
"""Seconds after which a smaller batch is written anyway (slow servers: the part file and the
progress keep up)."""
WRITE_QUEUE = 8
"""Batches of :data:`WRITE_BUFFER` bytes received ahead of the disk writes at most."""
WRITEBACK_WINDOW = 64 << 20
"""Bytes before the end of the part file from which each batch's write-back advice starts
(:func:`_write_batch`; earlier pages were dropped by earlier advice)."""
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

OnLanded = Callable[["EpisodeLanded"], Awaitable[None]]
SaveCheckpoint = Callable[[str, dict[str, Any] | None], Awaitable[None]]
"""``save(job_id, data)``: persists a job's checkpoint (``Engine.save_checkpoint``)."""


@attrs.frozen
class EpisodeLanded:
    """An episode file placed in the library: ``path`` (absolute), ``size`` in bytes, the
    ``hoster`` and ``language`` it came from."""

    series_key: str
    season: int
    episode: int
    path: Path
    size: int
    hoster: str
    language: str


class CandidateFailed(Exception):
    """One candidate failed for ``reason``; ``blame_hoster`` is false for local causes;
    ``retry_after`` (seconds) when the remote asked to slow down."""

    def __init__(
        self, reason: str, *, blame_hoster: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.blame_hoster = blame_hoster
        self.retry_after = retry_after


class PlaylistInstead(CandidateFailed):
    """A "direct" media URL answered an HLS playlist (``#EXTM3U``, RFC 8216 §4.3.1.1, or an
    ``mpegurl`` content type) at ``url``: the job fetches it as HLS instead."""

    def __init__(self, url: str) -> None:
        super().__init__(f"{url} answered an HLS playlist")
        self.url = url


def _http_url(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(field, "must be an absolute http(s) URL")
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise InvalidInput(field, f"invalid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(field, f"not an absolute http(s) URL: {value[:200]!r}")
    return value


def _count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(field, "must be an integer >= 0")
    return value


def dest_parts(dest: Any) -> list[str]:
    """The components of a ``dest`` parameter.

    :raises InvalidInput: ``params.dest`` when it is not a relative path of plain names.
    """
    field = "params.dest"
    if not isinstance(dest, str) or not dest.strip():
        raise InvalidInput(field, "must be a non-empty relative path")
    if dest.startswith(("/", "\\")) or "\\" in dest:
        raise InvalidInput(field, "must be relative to the library root, with '/' separators")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in dest):
        raise InvalidInput(field, "contains a control character")
    parts = dest.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidInput(field, f"has an empty, '.' or '..' component: {dest!r}")
        try:
            size = len(part.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidInput(field, "is not valid text") from None
        if size > FILENAME_MAX:
            raise InvalidInput(field, f"a component is longer than {FILENAME_MAX} bytes")
    return parts


def validate_episode_spec(spec: JobSpec) -> None:
    """Check an ``anime-episode`` submission.

    :raises InvalidInput: naming the field (``target``, ``params.series_key``,
        ``params.season``, ``params.episode``, ``params.dest``, ``params.candidates[i].url``…).
    """
    _http_url(spec.target, "target")
    params = spec.params
    if not isinstance(params, dict):
        raise InvalidInput("params", "must be an object")
    key = params.get("series_key")
    if not isinstance(key, str) or not key:
        raise InvalidInput("params.series_key", "must be a non-empty string")
    _count(params.get("season"), "params.season")
    _count(params.get("episode"), "params.episode")
    dest_parts(params.get("dest"))
    candidates = params.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        raise InvalidInput("params.candidates", "must be a non-empty list")
    if len(candidates) > MAX_CANDIDATES:
        raise InvalidInput("params.candidates", f"at most {MAX_CANDIDATES} entries")
    for i, cand in enumerate(candidates):
        field = f"params.candidates[{i}]"
        if not isinstance(cand, dict):
            raise InvalidInput(field, "must be an object {hoster, language, url}")
        for name in ("hoster", "language"):
            if not isinstance(cand.get(name), str) or not cand[name]:
                raise InvalidInput(f"{field}.{name}", "must be a non-empty string")
        _http_url(cand.get("url"), f"{field}.url")


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


@attrs.define
class _Try:
    """State of one handler run."""

    ctx: JobContext
    client: httpx.AsyncClient
    gate: DomainGate
    folder: list[str]
    stem: str
    root: Path
    max_bytes: int
    save_checkpoint: SaveCheckpoint | None
    clock: Callable[[], float]
    ffmpeg: Callable[[], str | None]
    page_timeout: float
    provider: str


def _failed(t: _Try, url: str, reason: str, *, retry_after: float | None = None) -> CandidateFailed:
    """A candidate failure at ``url``: the hoster is blamed (health) unless ``url`` is on the
    provider's own domain (the job's), whose outage says nothing about the hoster."""
    return CandidateFailed(reason, blame_hoster=_host(url) != t.provider, retry_after=retry_after)


@contextlib.asynccontextmanager
async def _open(
    t: _Try, url: str, headers: dict[str, str], allow: frozenset[int] = frozenset()
) -> AsyncIterator[tuple[httpx.Response, str]]:
    """GET ``url`` following redirects by hand (bounded, loops detected), each hop through the
    gate; yields the final response (its domain's gate slot held) and its URL. A status
    >= 400 fails the candidate unless it is in ``allow``."""
    seen: set[str] = set()
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        if current in seen:
            raise _failed(t, current, f"redirect loop at {current}")
        seen.add(current)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(t.gate.request(_host(current)))
            try:
                request = t.client.build_request("GET", current, headers=headers)
                resp = await t.client.send(request, stream=True)
            except httpx.TransportError as exc:
                raise _failed(t, current, f"{type(exc).__name__} for {current}: {exc}") from None
            stack.push_async_callback(resp.aclose)
            location = resp.headers.get("location")
            if resp.status_code in (301, 302, 303, 307, 308) and location:
                nxt = urljoin(current, location)
                if urlsplit(nxt).scheme not in ("http", "https"):
                    raise _failed(t, current, f"redirect to a non-http URL from {current}")
                current = nxt
                continue
            if resp.status_code in (429, 503):
                raise _failed(
                    t,
                    current,
                    f"HTTP {resp.status_code} from {_host(current)}",
                    retry_after=parse_retry_after(resp.headers),
                )
            if resp.status_code >= 400 and resp.status_code not in allow:
                raise _failed(t, current, f"HTTP {resp.status_code} for {current}")
            yield resp, current
            return
    raise _failed(t, current, f"more than {MAX_REDIRECTS} redirects from {url}")


async def _get_text(t: _Try, url: str, headers: dict[str, str]) -> tuple[str, str]:
    with trio.move_on_after(t.page_timeout) as scope:
        return await _read_text(t, url, headers)
    assert scope.cancelled_caught
    raise _failed(t, url, f"{url} did not answer completely within {t.page_timeout:g} s")


async def _read_text(t: _Try, url: str, headers: dict[str, str]) -> tuple[str, str]:
    async with _open(t, url, headers) as (resp, final):
        body = bytearray()
        full = False
        try:
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) >= MAX_PAGE_BYTES and not full:
                    full = True
                    await _stop(resp)
        except httpx.TransportError as exc:
            if full:
                return bytes(body[:MAX_PAGE_BYTES]).decode(
                    resp.encoding or "utf-8", "replace"
                ), final
            raise _failed(t, final, f"{type(exc).__name__} reading {final}: {exc}") from None
        return bytes(body[:MAX_PAGE_BYTES]).decode(resp.encoding or "utf-8", "replace"), final


async def _resolve(t: _Try, hoster: str, url: str) -> tuple[Stream, str]:
    headers = {"User-Agent": USER_AGENT}
    html, page_url = await _get_text(t, url, headers)
    try:
        step = resolve(hoster, html, page_url)
        for _ in range(MAX_FETCH_STEPS):
            if isinstance(step, Stream):
                break
            body, final = await _get_text(t, step.url, {**headers, **step.headers})
            step = step.then(body, final)
    except HosterError as exc:
        raise CandidateFailed(str(exc)) from None
    if isinstance(step, Fetch):
        raise CandidateFailed(f"{hoster}: more than {MAX_FETCH_STEPS} follow-up requests")
    return step, page_url


def _is_text(content_type: str) -> bool:
    ctype = content_type.split(";", 1)[0].strip().lower()
    return ctype.startswith("text/") or ctype.endswith(("json", "xml", "javascript"))


async def _direct(
    t: _Try, stream: Stream, candidate_url: str, dfd: int, started: float
) -> tuple[str, int, float]:
    """Download ``stream`` into the part file; returns (part name, size, latency s)."""
    job = t.ctx.job
    part = placement.part_name(t.stem, job.id)
    checkpoint = job.checkpoint or {}
    have = await trio.to_thread.run_sync(placement.part_size, dfd, part)
    if checkpoint.get("candidate") != candidate_url:
        have = 0  # another candidate's bytes (or none): start over
    validator = checkpoint.get("validator") if have else None
    headers = {"User-Agent": USER_AGENT, **stream.headers, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        if isinstance(validator, str) and validator:
            headers["If-Range"] = validator
    allow = frozenset({416}) if have else frozenset()
    async with _open(t, stream.url, headers, allow) as (resp, final_url):
        current = resume_validator(resp.headers)
        if (
            have
            and resp.status_code in (206, 416)
            and validator
            and current not in (None, validator)
        ):
            # the server ignored If-Range: these bytes belong to another version of the file
            await trio.to_thread.run_sync(placement.remove, dfd, part)
            raise CandidateFailed(f"{final_url} changed since the part file was written")
        if resp.status_code == 416:
            _, full = content_range_start(resp.headers.get("content-range"))
            if full == have:  # complete before an interruption; only the placement was missing
                return part, have, t.clock() - started
            await trio.to_thread.run_sync(placement.remove, dfd, part)
            raise CandidateFailed(f"{final_url} refused the resume range; starting over")
        ctype = resp.headers.get("content-type", "")
        if "mpegurl" in ctype.lower():
            raise PlaylistInstead(final_url)
        if _is_text(ctype):
            raise CandidateFailed(f"{final_url} answered {ctype!r} instead of video")
        offset = 0
        total: int | None = None
        if resp.status_code == 206 and have:
            start, full = content_range_start(resp.headers.get("content-range"))
            if start != have:
                raise CandidateFailed(f"Content-Range starts at {start}, asked for {have}")
            offset, total = have, full
        elif resp.status_code == 200:
            length = resp.headers.get("content-length", "")
            total = int(length) if length.isdigit() else None
            if t.save_checkpoint is not None:
                await t.save_checkpoint(job.id, {"candidate": candidate_url, "validator": current})
        else:
            raise CandidateFailed(f"unexpected HTTP {resp.status_code} from {final_url}")
        if total is not None and total > t.max_bytes:
            raise CandidateFailed(f"announces {total} bytes, above the {t.max_bytes}-byte limit")
        fd = await trio.to_thread.run_sync(
            lambda: placement.open_part(dfd, part, append=bool(offset))
        )
        try:
            body = _Body(t, resp, final_url, fd, offset, total, started)
            await body.receive()
            await trio.to_thread.run_sync(os.fsync, fd)
        finally:
            os.close(fd)
        if body.failure is not None:
            raise body.failure
        done = body.done
        if not offset:
            _check_head(body.head, final_url)
        if total is not None and done != total:
            raise CandidateFailed(f"got {done} bytes from {final_url}, announced {total}")
        t.ctx.progress(done, total or done)
        return part, done, t.clock() - started if body.latency is None else body.latency


_IOV_MAX = os.sysconf("SC_IOV_MAX")
"""Buffers one ``writev(2)`` accepts (POSIX ``IOV_MAX``; 1024 on Linux)."""


def _write_all(fd: int, chunks: list[bytes]) -> None:
    # one writev(2) for the batch (no joined copy); a short write continues where it stopped
    views = [memoryview(c) for c in chunks if c]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]


def _write_batch(fd: int, chunks: list[bytes], start: int) -> None:
    """Write ``chunks`` (:func:`_write_all`), then ask the kernel to start writing back the
    file from byte ``start`` on and to drop what is already on disk (``POSIX_FADV_DONTNEED``:
    Linux starts an asynchronous write-back of the dirty pages of the range and drops its clean
    ones), so the ``fsync`` before the placement has only the last batches left, and a large
    episode does not crowd the page cache."""
    _write_all(fd, chunks)
    os.posix_fadvise(fd, start, 0, os.POSIX_FADV_DONTNEED)


@attrs.define
class _Body:
    """Receives a media body into part file ``fd``: the network side and a writer task run
    at once (a bounded channel of ~1 MiB batches between them), so the disk write of one
    batch overlaps the reception of the next."""

    t: _Try
    resp: httpx.Response
    url: str
    fd: int
    offset: int
    total: int | None
    started: float
    done: int = 0
    head: bytes = b""
    latency: float | None = None
    failure: CandidateFailed | None = None
    write_error: OSError | None = None

    async def receive(self) -> None:
        """Run until the body ends; sets :attr:`failure` for a hoster's fault, raises
        ``OSError`` for a local write failure."""
        self.done = self.offset
        send, recv = trio.open_memory_channel[list[bytes]](WRITE_QUEUE)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer, recv)
            async with send:
                await self._network(send)
        if self.write_error is not None:
            raise self.write_error

    async def _writer(self, recv: trio.MemoryReceiveChannel[list[bytes]]) -> None:
        written = self.offset
        async with recv:
            async for batch in recv:
                if self.write_error is not None:
                    continue
                start = max(0, written - WRITEBACK_WINDOW)
                written += sum(map(len, batch))
                try:
                    await trio.to_thread.run_sync(_write_batch, self.fd, batch, start)
                except OSError as exc:
                    self.write_error = exc

    async def _network(self, send: trio.MemorySendChannel[list[bytes]]) -> None:
        t, total = self.t, self.total
        batch: list[bytes] = []
        size = 0
        stopping = False
        flush_at = trio.current_time() + WRITE_INTERVAL
        try:
            async for chunk in self.resp.aiter_raw():
                if stopping:
                    continue
                if self.latency is None:
                    self.latency = t.clock() - self.started
                if not self.offset and len(self.head) < placement.SNIFF_BYTES:
                    self.head += chunk[: placement.SNIFF_BYTES - len(self.head)]
                    if len(self.head) >= placement.SNIFF_BYTES:
                        self.failure = _head_problem(self.head, self.url)
                if self.failure is not None or self.write_error is not None:
                    stopping = True
                    await _stop(self.resp)
                    continue
                batch.append(chunk)
                size += len(chunk)
                self.done += len(chunk)
                now = trio.current_time()
                if size >= WRITE_BUFFER or now >= flush_at:
                    await send.send(batch)
                    batch, size = [], 0
                    flush_at = now + WRITE_INTERVAL
                    t.ctx.progress(self.done, total)
            if batch and not stopping:
                await send.send(batch)
        except httpx.HTTPError as exc:
            if stopping:
                return
            if batch:
                await send.send(batch)
            announced = f" of announced {total}" if total is not None else ""
            self.failure = CandidateFailed(
                f"body from {self.url} ended after {self.done}{announced} bytes "
                f"({type(exc).__name__})"
            )


def _head_problem(head: bytes, url: str) -> CandidateFailed | None:
    if head.lstrip().startswith(b"#EXTM3U"):
        return PlaylistInstead(url)
    if placement.media_extension(head) is None:
        return CandidateFailed(f"{url} did not send video (starts with {head[:16]!r})")
    return None


def _check_head(head: bytes, url: str) -> None:
    problem = _head_problem(head, url)
    if problem is not None:
        raise problem


async def _stop(resp: httpx.Response) -> None:
    """Close ``resp`` while its body is being iterated: the iteration's next step then
    raises inside httpx's innermost stream, which finishes every layer of its generators
    (leaving the loop by an exception of our own would leave them suspended)."""
    await resp.aclose()


def _sniff(dfd: int, name: str) -> str | None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        return placement.media_extension(os.pread(fd, placement.SNIFF_BYTES, 0))
    finally:
        os.close(fd)


def _adopt(src: Path, dfd: int, part: str) -> int:
    """Move yt-dlp's output into the part file (rename when on the same file system, else
    copy and fsync); returns its size."""
    try:
        os.rename(src, part, dst_dir_fd=dfd)
    except OSError:
        fd = placement.open_part(dfd, part, append=False)
        with src.open("rb") as fin, os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout, WRITE_BUFFER)
            fout.flush()
            os.fsync(fout.fileno())
        src.unlink()
    else:
        fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return os.stat(part, dir_fd=dfd, follow_symlinks=False).st_size


async def _hls(t: _Try, stream: Stream, dfd: int, started: float, n: int) -> tuple[str, int, float]:
    ffmpeg = t.ffmpeg()
    if ffmpeg is None:
        raise CandidateFailed("ffmpeg not found on PATH (needed for HLS)", blame_hoster=False)
    workdir = t.ctx.tmp_dir / f"hls-{n}"
    await trio.to_thread.run_sync(lambda: workdir.mkdir(parents=True, exist_ok=True))
    first: list[float] = []

    def progress(done: int, total: int | None) -> None:
        if not first:
            first.append(t.clock() - started)
        t.ctx.progress(done, total)

    headers = {"User-Agent": USER_AGENT, **stream.headers}
    async with t.gate.request(_host(stream.url)):
        path, error = await fetch_hls(
            stream.url, headers, workdir, ffmpeg, progress, max_bytes=t.max_bytes
        )
    if path is None:
        raise CandidateFailed(f"HLS download failed: {error}")
    part = placement.part_name(t.stem, t.ctx.job.id)
    size = await trio.to_thread.run_sync(_adopt, path, dfd, part)
    if await trio.to_thread.run_sync(_sniff, dfd, part) is None:
        await trio.to_thread.run_sync(placement.remove, dfd, part)
        raise CandidateFailed("HLS download did not yield a video file")
    return part, size, first[0] if first else t.clock() - started


def make_episode_handler(
    *,
    root: Path,
    health: HosterHealth,
    on_landed: OnLanded,
    gate: DomainGate | None = None,
    save_checkpoint: SaveCheckpoint | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 60.0,
    page_timeout: float = 120.0,
    ffmpeg: Callable[[], str | None] = lambda: shutil.which("ffmpeg"),
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[JobContext], Awaitable[dict[str, Any] | None]]:
    """The handler of :data:`KIND` writing under the library ``root`` (see the module
    docstring).

    :param health: shared hoster health (success rate, latency, cool-down).
    :param on_landed: awaited with the :class:`EpisodeLanded` once the file is in place.
    :param gate: request politeness per domain (default: a :class:`DomainGate` of its own).
    :param save_checkpoint: persists the resume validator (``Engine.save_checkpoint``);
        ``None``: a resumed try sends ``Range`` without ``If-Range``.
    :param max_bytes: the largest episode accepted, bytes.
    :param timeout: seconds to connect and between two received bytes.
    :param page_timeout: seconds a provider redirect, hoster page or follow-up may take in all
        (redirects included); a page trickling in slower fails its candidate.
    :param ffmpeg: finds the ffmpeg program (``None`` when missing: HLS candidates fail).
    """
    gate = gate or DomainGate()

    async def handler(ctx: JobContext) -> dict[str, Any]:
        job = ctx.job
        try:
            validate_episode_spec(JobSpec(KIND, job.target, job.domain, job.params))
        except InvalidInput as exc:
            raise PermanentError(str(exc)) from None
        params = job.params
        parts = dest_parts(params["dest"])
        folder, stem = parts[:-1], parts[-1]
        try:
            dfd = await trio.to_thread.run_sync(
                lambda: placement.open_folder(root, folder, create=True)
            )
        except placement.UnsafePath as exc:
            raise PermanentError(f"params.dest: {exc}") from None
        try:
            present = await trio.to_thread.run_sync(placement.existing_episode, dfd, stem)
            if present is not None:
                # e.g. a crash came between the link and the unlink of the part file
                part = placement.part_name(stem, job.id)
                await trio.to_thread.run_sync(placement.remove, dfd, part)
                checkpoint = job.checkpoint or {}
                return await _landed(
                    job,
                    Path(root, *folder, present),
                    dfd,
                    present,
                    str(checkpoint.get("hoster", "")),
                    str(checkpoint.get("language", "")),
                    already=True,
                )
            verify = await trio.to_thread.run_sync(ssl_context)
            async with bulk_client(verify=verify, timeout=httpx.Timeout(timeout)) as client:
                t = _Try(
                    ctx,
                    client,
                    gate,
                    folder,
                    stem,
                    root,
                    max_bytes,
                    save_checkpoint,
                    clock,
                    ffmpeg,
                    page_timeout,
                    job.domain.lower(),
                )
                return await _run(t, job, dfd)
        finally:
            os.close(dfd)

    async def _run(t: _Try, job: Job, dfd: int) -> dict[str, Any]:
        reasons: list[str] = []
        known = 0
        retry_after: float | None = None
        for n, cand in enumerate(job.params["candidates"]):
            hoster = normalize(cand["hoster"])
            label = f"{cand['hoster']} ({cand['language']})"
            if hoster not in RESOLVERS:
                reasons.append(f"{label}: no resolver for this hoster")
                continue
            known += 1
            if not health.available(hoster):
                reasons.append(f"{label}: cooling down ({health.cooldown_left(hoster):.0f} s left)")
                continue
            started = clock()
            try:
                stream, _page = await _resolve(t, hoster, cand["url"])
                if stream.kind == "direct":
                    try:
                        part, size, latency = await _direct(t, stream, cand["url"], dfd, started)
                    except PlaylistInstead as exc:
                        playlist = Stream(exc.url, "hls", stream.headers)
                        part, size, latency = await _hls(t, playlist, dfd, started, n)
                else:
                    part, size, latency = await _hls(t, stream, dfd, started, n)
                ext = await trio.to_thread.run_sync(_sniff, dfd, part)
                if ext is None:
                    await trio.to_thread.run_sync(placement.remove, dfd, part)
                    raise CandidateFailed("the downloaded file is not video")
                final = t.stem + ext
                try:
                    await trio.to_thread.run_sync(placement.place, dfd, part, final)
                except FileExistsError:
                    raise PermanentError(f"{final} appeared in the library meanwhile") from None
            except CandidateFailed as exc:
                reasons.append(f"{label}: {exc.reason}")
                if exc.blame_hoster:
                    health.record_failure(hoster, exc.reason)
                if exc.retry_after is not None:
                    retry_after = max(retry_after or 0.0, exc.retry_after)
                continue
            health.record_success(hoster, latency)
            path = Path(t.root, *t.folder, final)
            if save_checkpoint is not None:
                await save_checkpoint(job.id, {"hoster": hoster, "language": cand["language"]})
            return await _landed(job, path, dfd, final, hoster, cand["language"], size=size)
        summary = "; ".join(reasons)
        if not known:
            raise PermanentError(f"no usable hoster: {summary}")
        if retry_after is not None:
            raise RateLimitedError(f"every hoster failed: {summary}", retry_after)
        raise RetryableError(f"every hoster failed: {summary}")

    async def _landed(
        job: Job,
        path: Path,
        dfd: int,
        name: str,
        hoster: str,
        language: str,
        *,
        already: bool = False,
        size: int | None = None,
    ) -> dict[str, Any]:
        if size is None:
            st = await trio.to_thread.run_sync(
                lambda: os.stat(name, dir_fd=dfd, follow_symlinks=False)
            )
            size = st.st_size
        params = job.params
        await on_landed(
            EpisodeLanded(
                params["series_key"],
                params["season"],
                params["episode"],
                path,
                size,
                hoster,
                language,
            )
        )
        return {
            "path": str(path),
            "size": size,
            "hoster": hoster,
            "language": language,
            "already_present": already,
        }

    return handler


async def remove_partials(root: Path, job: Job) -> None:
    """Delete the part file of episode ``job`` (for the kind's final hook on ``failed`` or
    ``cancelled``); a missing folder or file is fine."""

    def run() -> None:
        try:
            parts = dest_parts(job.params.get("dest"))
        except InvalidInput:
            return
        try:
            dfd = placement.open_folder(root, parts[:-1], create=False)
        except OSError:
            return
        try:
            placement.remove(dfd, placement.part_name(parts[-1], job.id))
        finally:
            os.close(dfd)

    await trio.to_thread.run_sync(run)


__all__: Sequence[str] = (
    "KIND",
    "CandidateFailed",
    "EpisodeLanded",
    "make_episode_handler",
    "remove_partials",
    "validate_episode_spec",
)
