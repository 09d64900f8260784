"""The ``download`` job kind: an HTTP(S) GET streamed into a folder under the download root.

Job shape: ``target`` is the URL (``http``/``https``); ``domain`` its host (politeness);
``params``:

- ``dest`` (str, optional): a folder relative to the download root (an absolute path must lie
  under it). A path that escapes the root (``..``, a symlink out) is refused at submission and
  at each try; after that check every folder and file below the root is made, opened and
  renamed through :mod:`hathd.safepath` (``O_NOFOLLOW`` walks from a descriptor of the root),
  so a symlink planted later fails the job (``PermanentError``) instead of being followed.
- ``filename`` (str, optional): the file name (at most 240 bytes); default the URL's last path
  segment.
- ``size`` (int, optional): the expected size in bytes.
- ``sha256`` (str, optional): the expected SHA-256, 64 hex digits.

Behaviour: bytes go to the job's own partial file ``.<name>.<job id>.part`` beside the
destination (hidden; ``<name>`` is cut so the whole fits in 255 bytes), so two jobs writing the
same file name never share one. The first response's validator (a strong ``ETag``, else
``Last-Modified``) is saved as the job's checkpoint (``{"validator": ...}``) before any byte is
written. After an interruption the next try asks for the rest with ``Range: bytes=<have>-``
(RFC 9110 §14.2) and ``If-Range: <validator>`` (§13.1.5), and appends when the server answers
``206`` with a matching ``Content-Range`` start (§14.4); a ``200`` (the remote file changed, or
ranges are not supported) starts over from byte 0. Without a saved validator the try resumes
with ``Range`` alone. When complete the file is fsynced, checked (size, SHA-256) and renamed
atomically into place (an existing file is never overwritten, not even one another job
creates at the same moment: ``name (1).ext`` is used instead). A mismatch deletes the partial
file and fails the job. Progress (bytes, rate, ETA) is reported through the job context.

The partial file is kept while the job may go on (a retryable failure, a pause, shutdown) and
deleted when the job ends ``failed`` or ``cancelled`` (the kind's final hook).

Errors: 404/410/400/401/403 → :class:`PermanentError`; 429/503 →
:class:`RateLimitedError` with ``Retry-After`` (seconds or HTTP date, §10.2.3) or
``RateLimit-Reset`` (seconds) as the minimum wait; other 5xx and network errors →
:class:`RetryableError` (the partial file is kept for the next try). ``OSError`` (e.g.
``ENOSPC``, which pauses the queue) propagates to the engine.

Before the rename, the chosen name, size and SHA-256 are saved in the job's checkpoint
(``{"validator": ..., "placed": {"path", "size", "sha256"}}``). A try that runs again because the
process died after the rename but before the job's ``done`` was committed finds that file (same
size and SHA-256) and ends with it, removing a leftover partial file, instead of writing a second
copy as ``name (1).ext``. With an expected SHA-256, a destination file that already has it also
counts as done without a request.

The result: ``{"path", "size", "sha256", "resumed_from", "already_present"}`` (sizes in bytes).
"""

from __future__ import annotations

import email.utils
import errno
import functools
import hashlib
import logging
import os
import ssl
import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import attrs
import httpx
import trio

from hathd import safepath
from hathd.engine.api import Job, JobContext, JobSpec, JobState
from hathd.engine.bulkhttp import bulk_client
from hathd.errors import PermanentError, RateLimitedError, RetryableError
from hathd.retryafter import parse_retry_after

if TYPE_CHECKING:
    from hathd.engine.core import Engine

log = logging.getLogger(__name__)

KIND = "download"
_PERMANENT_STATUS = frozenset({400, 401, 403, 404, 405, 410, 451})
NAME_MAX = 255
"""Bytes in one file name (Linux ``NAME_MAX``)."""
FILENAME_MAX = 240
"""Bytes a download's file name may have (room is left for `` (N)`` when it exists)."""

SaveCheckpoint = Callable[[dict[str, Any] | None], Awaitable[None]]
"""Persists the job's checkpoint (``Engine.save_checkpoint`` bound to the job)."""


def check_url(url: str) -> str:
    """The host of ``url`` (lower case).

    :raises ValueError: ``target: …`` when the URL is not http(s) with a host.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"target: invalid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"target: not an http(s) URL with a host: {url!r}")
    return parts.hostname.lower()


def _check_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ValueError(f"filename: not a plain file name: {name!r}")
    try:
        size = len(os.fsencode(name))
    except UnicodeError:
        raise ValueError(f"filename: not encodable as a file name: {name!r}") from None
    if size > FILENAME_MAX:
        raise ValueError(f"filename: longer than {FILENAME_MAX} bytes")
    return name


def part_path(wanted: Path, job_id: str) -> Path:
    """The partial file of job ``job_id`` downloading to ``wanted``:
    ``.<name>.<job_id>.part`` in the same folder, ``<name>`` cut (at a byte boundary, kept
    decodable) so the whole name fits in :data:`NAME_MAX` bytes."""
    suffix = f".{job_id}.part"
    room = NAME_MAX - 1 - len(os.fsencode(suffix))
    name = os.fsdecode(os.fsencode(wanted.name)[:room])
    return wanted.with_name(f".{name}{suffix}")


def resume_validator(headers: httpx.Headers) -> str | None:
    """The validator to send in ``If-Range`` when resuming a response with ``headers``: its
    strong ``ETag``, else its ``Last-Modified`` when that is strong, i.e. at least one second
    before the response's ``Date`` (RFC 9110 §13.1.5 allows only strong validators there;
    §8.8.2.2 says when a date is strong); ``None`` otherwise."""
    etag = (headers.get("etag") or "").strip()
    if etag and not etag.startswith("W/"):
        return etag
    modified = (headers.get("last-modified") or "").strip()
    if not modified:
        return None
    try:
        modified_at = email.utils.parsedate_to_datetime(modified)
        date_at = email.utils.parsedate_to_datetime((headers.get("date") or "").strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if modified_at.tzinfo is None or date_at.tzinfo is None:
        return None
    return modified if (date_at - modified_at).total_seconds() >= 1 else None


def default_filename(url: str) -> str:
    """The last path segment of ``url`` (percent-decoded), or ``"download"``."""
    segment = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    try:
        return _check_name(segment)
    except ValueError:
        return "download"


def resolve_destination(root: Path, params: dict[str, Any], url: str) -> Path:
    """The file a download job writes (not yet de-duplicated), inside ``root``.

    :raises ValueError: naming the field (``dest``, ``filename``, ``size``, ``sha256``) when a
        parameter is malformed or the path would escape ``root``.
    """
    dest = params.get("dest", "") or ""
    if not isinstance(dest, str) or "\x00" in dest:
        raise ValueError("dest: must be a folder path")
    name = params.get("filename")
    if name is None:
        name = default_filename(url)
    elif not isinstance(name, str):
        raise ValueError("filename: must be a string")
    _check_name(name)
    size = params.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ValueError("size: must be a non-negative integer (bytes)")
    digest = params.get("sha256")
    if digest is not None:
        if not isinstance(digest, str) or len(digest) != 64:
            raise ValueError("sha256: must be 64 hex digits")
        try:
            bytes.fromhex(digest)
        except ValueError:
            raise ValueError("sha256: must be 64 hex digits") from None
    base = root.resolve()
    folder = (base / dest).resolve()
    if not folder.is_relative_to(base):
        raise ValueError(f"dest: {dest!r} escapes the download root")
    target = (folder / name).resolve()
    if not target.is_relative_to(base) or target.parent != folder:
        raise ValueError(f"filename: {name!r} escapes the download root")
    return target


def download_spec(
    url: str,
    *,
    dest: str | None = None,
    filename: str | None = None,
    size: int | None = None,
    sha256: str | None = None,
    priority: int = 0,
    source: str = "api",
) -> JobSpec:
    """A :class:`JobSpec` of the ``download`` kind (domain = the URL's host).

    :raises ValueError: a bad URL (``target: …``).
    """
    host = check_url(url)
    params: dict[str, Any] = {}
    if dest:
        params["dest"] = dest
    if filename:
        params["filename"] = filename
    if size is not None:
        params["size"] = size
    if sha256:
        params["sha256"] = sha256.lower()
    return JobSpec(
        kind=KIND, target=url, domain=host, params=params, priority=priority, source=source
    )


def _candidates(path: Path) -> Iterator[Path]:
    # name.ext, name (1).ext, name (2).ext, …
    yield path
    stem, suffix = path.stem, path.suffix
    for n in range(1, 10_000):
        yield path.with_name(f"{stem} ({n}){suffix}")


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once (the first call blocks for ~65 ms of CPU
    loading the CA bundle: make it in a worker thread)."""
    return httpx.create_ssl_context()


def _hash_file(base: Path, path: Path) -> Any:
    """The SHA-256 hasher over the regular file ``path`` under ``base`` (no symlink followed).

    :raises IsADirectoryError: ``path`` is not a regular file.
    """
    fd = safepath.open_under(base, path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a regular file", str(path))
        hasher = hashlib.sha256()
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
    return hasher


WRITEBACK_WINDOW = 64 << 20
"""Bytes before the end of the partial file from which each chunk's write-back advice starts."""


def _write_hashed(fd: int, hasher: Any, chunk: bytes, start: int) -> None:
    """Write ``chunk`` whole to ``fd`` (a short write continues), feed it to ``hasher``, then
    advise ``POSIX_FADV_DONTNEED`` from byte ``start`` on (Linux starts an asynchronous
    write-back of the dirty pages and drops the clean ones, so the final ``fsync`` has only the
    tail left and a large download does not crowd the page cache)."""
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view) :]
    hasher.update(chunk)
    os.posix_fadvise(fd, start, 0, os.POSIX_FADV_DONTNEED)


def _size_under(base: Path, path: Path) -> int | None:
    """Bytes in the regular file ``path`` under ``base``; ``None`` when absent or not a
    regular file."""
    try:
        fd = safepath.open_under(base, path, os.O_RDONLY | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _unlink(base: Path, path: Path) -> None:
    try:
        safepath.unlink_under(base, path)
    except (FileNotFoundError, NotADirectoryError):
        pass


def _finish(base: Path, part: Path, wanted: Path) -> Path:
    """Give ``part`` the first free name of :func:`_candidates`, never replacing a file, even
    one another job creates at the same moment (:func:`hathd.safepath.rename_under`: a hard
    link, which fails when the name exists, then the partial name is dropped); the folder is
    fsynced."""
    for candidate in _candidates(wanted):
        if _link_into_place(base, part, candidate):
            return candidate
    raise PermanentError(f"no free file name for {wanted}")


PLACED_KEY = "placed"
"""Checkpoint key of the placement recorded before the rename: ``{"path", "size", "sha256"}``."""


@attrs.define
class _Placement:
    """Gives a complete partial file its final name, recording the name in the job's checkpoint
    (beside the resume validator) before the rename, so a try that runs again after a kill
    between the rename and the job's ``done`` commit finds its own file
    (:func:`_recover_placement`) instead of writing a second copy as ``name (1).ext``."""

    base: Path
    checkpoint: dict[str, Any]
    save: SaveCheckpoint | None

    async def place(self, part: Path, wanted: Path, size: int, digest: str) -> Path:
        if self.save is None:
            return await trio.to_thread.run_sync(_finish, self.base, part, wanted)
        for _ in range(100):
            candidate = await trio.to_thread.run_sync(_first_free, wanted)
            placed = {"path": str(candidate), "size": size, "sha256": digest}
            await self.save({**self.checkpoint, PLACED_KEY: placed})
            if await trio.to_thread.run_sync(_link_into_place, self.base, part, candidate):
                return candidate
            # another job took the name between the check and the link: record the next one
        return await trio.to_thread.run_sync(_finish, self.base, part, wanted)


def _first_free(wanted: Path) -> Path:
    for candidate in _candidates(wanted):
        if not os.path.lexists(candidate):
            return candidate
    raise PermanentError(f"no free file name for {wanted}")


def _link_into_place(base: Path, part: Path, candidate: Path) -> bool:
    """Rename ``part`` to ``candidate`` (both under ``base``, no symlink followed) unless that
    name exists (then ``False``); the folder is fsynced."""
    try:
        safepath.rename_under(base, part, candidate)
    except FileExistsError:
        return False
    return True


def _recover_placement(
    base: Path, checkpoint: dict[str, Any], part: Path, wanted: Path
) -> dict[str, Any] | None:
    """The result of a previous try that placed its file but was killed before the job's
    ``done`` was committed: the checkpoint's recorded placement, when that file is in the
    destination folder with the recorded size and SHA-256 (the partial file, if the kill came
    between the link and its removal, is deleted). ``None``: nothing to recover."""
    placed = checkpoint.get(PLACED_KEY)
    if not isinstance(placed, dict):
        return None
    path, size, digest = placed.get("path"), placed.get("size"), placed.get("sha256")
    if not isinstance(path, str) or not isinstance(size, int) or not isinstance(digest, str):
        return None
    final = Path(path)
    if final.parent != wanted.parent or not final.name.startswith(wanted.stem):
        return None  # not a name this job would have chosen
    if _size_under(base, final) != size:
        return None  # absent (killed before the rename: the partial file is there) or another
    if _hash_file(base, final).hexdigest() != digest:
        return None
    _unlink(base, part)
    log.info("download: %s was placed by a try killed before it was recorded done", final)
    return {
        "path": str(final),
        "size": size,
        "sha256": digest,
        "resumed_from": size,
        "already_present": False,
    }


def content_range_start(value: str | None) -> tuple[int | None, int | None]:
    """The first byte and the complete length (bytes) of a ``Content-Range`` value (RFC 9110
    §14.4): ``"bytes 100-199/200"`` → ``(100, 200)``, ``"bytes */200"`` → ``(None, 200)``;
    ``(None, None)`` when absent or not understood."""
    if not value or not value.startswith("bytes "):
        return None, None
    spec, _, total = value[6:].partition("/")
    total_n = int(total) if total.strip().isdigit() else None
    if spec.strip() == "*":
        return None, total_n
    first = spec.split("-", 1)[0].strip()
    return (int(first) if first.isdigit() else None), total_n


async def download(
    ctx: JobContext, root: Path, save_checkpoint: SaveCheckpoint | None = None
) -> dict[str, Any]:
    """Run one try of a download job; see the module docstring for params and errors.

    :param root: the download root the destination must lie under.
    :param save_checkpoint: persists the job's checkpoint (the resume validator, the
        placement) before bytes are written and before the rename; ``None``: resume with
        ``Range`` alone, no placement record.
    :raises PermanentError: also when a symlink appears below the root during the try
        (:class:`hathd.safepath.UnsafePath`): nothing is written through it.
    """
    try:
        return await _download(ctx, root, save_checkpoint)
    except safepath.UnsafePath as exc:
        raise PermanentError(f"dest: {exc.strerror or exc}") from None


async def _download(
    ctx: JobContext, root: Path, save_checkpoint: SaveCheckpoint | None
) -> dict[str, Any]:
    job = ctx.job
    try:
        check_url(job.target)
        wanted = await trio.to_thread.run_sync(resolve_destination, root, job.params, job.target)
    except ValueError as exc:
        raise PermanentError(str(exc)) from None
    expected_size: int | None = job.params.get("size")
    expected_sha: str | None = job.params.get("sha256")
    part = part_path(wanted, job.id)
    checkpoint: dict[str, Any] = dict(job.checkpoint or {})
    base = await trio.to_thread.run_sync(root.resolve)
    await trio.to_thread.run_sync(lambda: base.mkdir(parents=True, exist_ok=True))
    # every later step below ``base`` goes through hathd.safepath: a symlink planted after
    # resolve_destination's check is refused (UnsafePath), never followed
    await trio.to_thread.run_sync(safepath.makedirs_under, base, wanted.parent)
    recovered = await trio.to_thread.run_sync(_recover_placement, base, checkpoint, part, wanted)
    if recovered is not None:
        ctx.progress(recovered["size"], recovered["size"])
        return recovered
    present_size = await trio.to_thread.run_sync(_size_under, base, wanted)
    if expected_sha is not None and present_size is not None:
        # already fetched (e.g. a crash came between the rename and the "done" write)
        present = await trio.to_thread.run_sync(_hash_file, base, wanted)
        if present.hexdigest() == expected_sha.lower():
            size = present_size
            return {
                "path": str(wanted),
                "size": size,
                "sha256": present.hexdigest(),
                "resumed_from": size,
                "already_present": True,
            }
    have = await trio.to_thread.run_sync(_size_under, base, part) or 0
    saved = (job.checkpoint or {}).get("validator")
    validator = saved if isinstance(saved, str) and saved else None
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        if validator is not None:
            headers["If-Range"] = validator
    timeout = httpx.Timeout(30.0, read=60.0)
    verify = await trio.to_thread.run_sync(ssl_context)

    async def start_over(reason: str) -> RetryableError:
        await trio.to_thread.run_sync(_unlink, base, part)
        return RetryableError(f"{reason}; starting over")

    try:
        async with (
            bulk_client(verify=verify, timeout=timeout, follow_redirects=True) as client,
            client.stream("GET", job.target, headers=headers) as resp,
        ):
            status = resp.status_code
            current = resume_validator(resp.headers)
            # a resumed response (416 or 206) for another version of the file
            changed = validator is not None and current is not None and current != validator
            if status == 416 and have:
                if changed:
                    raise await start_over("the remote file changed")
                _, full = content_range_start(resp.headers.get("content-range"))
                if full == have or (full is None and expected_size == have):
                    return await _complete(
                        ctx,
                        part,
                        wanted,
                        have,
                        have,
                        expected_size,
                        expected_sha,
                        resumed_from=have,
                        placement=_Placement(base, checkpoint, save_checkpoint),
                    )
                raise await start_over("server refused the resume range")
            if status in (429, 503):
                raise RateLimitedError(
                    f"HTTP {status} from {job.domain}", parse_retry_after(resp.headers)
                )
            if status in _PERMANENT_STATUS:
                raise PermanentError(f"HTTP {status} for {job.target}")
            if status >= 400:
                raise RetryableError(f"HTTP {status} for {job.target}")
            offset = 0
            total: int | None = None
            if status == 206 and have:
                start, total = content_range_start(resp.headers.get("content-range"))
                if start != have:
                    raise await start_over(f"Content-Range starts at {start}, asked for {have}")
                if changed:  # the server ignored If-Range
                    raise await start_over("the remote file changed")
                offset = have
            elif status == 200:
                length = resp.headers.get("content-length")
                total = int(length) if length and length.isdigit() else None
                if save_checkpoint is not None and current != validator:
                    # saved before the first byte, so a later resume is asked with If-Range
                    checkpoint = {} if current is None else {"validator": current}
                    await save_checkpoint(checkpoint or None)
            else:
                raise RetryableError(f"unexpected HTTP {status}")
            if total is None and expected_size is not None:
                total = expected_size
            if expected_size is not None and total is not None and total != expected_size:
                raise PermanentError(
                    f"size mismatch: server announces {total} bytes, expected {expected_size}"
                )
            hasher = (
                await trio.to_thread.run_sync(_hash_file, base, part)
                if offset
                else hashlib.sha256()
            )
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if offset else os.O_TRUNC)
            fd = await trio.to_thread.run_sync(safepath.open_under, base, part, flags, 0o644)
            done = offset
            ctx.progress(done, total)
            try:
                async for chunk in resp.aiter_bytes():
                    # write and hash in the worker thread (hashlib releases the GIL): the
                    # event loop only receives
                    start = max(0, done - WRITEBACK_WINDOW)
                    await trio.to_thread.run_sync(_write_hashed, fd, hasher, chunk, start)
                    done += len(chunk)
                    ctx.progress(done, total)
                await trio.to_thread.run_sync(os.fsync, fd)
            finally:
                os.close(fd)
            return await _complete(
                ctx,
                part,
                wanted,
                done,
                done,
                expected_size,
                expected_sha,
                resumed_from=offset,
                hasher=hasher,
                placement=_Placement(base, checkpoint, save_checkpoint),
            )
    except httpx.TransportError as exc:
        raise RetryableError(f"{type(exc).__name__}: {exc}") from None
    except httpx.InvalidURL as exc:
        raise PermanentError(f"target: {exc}") from None


async def _complete(
    ctx: JobContext,
    part: Path,
    wanted: Path,
    done: int,
    size: int,
    expected_size: int | None,
    expected_sha: str | None,
    *,
    resumed_from: int,
    placement: _Placement,
    hasher: Any = None,
) -> dict[str, Any]:
    base = placement.base
    if hasher is None:
        hasher = await trio.to_thread.run_sync(_hash_file, base, part)
    digest = hasher.hexdigest()
    if expected_size is not None and size != expected_size:
        await trio.to_thread.run_sync(_unlink, base, part)
        raise PermanentError(f"size mismatch: got {size} bytes, expected {expected_size}")
    if expected_sha is not None and digest != expected_sha.lower():
        await trio.to_thread.run_sync(_unlink, base, part)
        raise PermanentError(f"sha256 mismatch: got {digest}, expected {expected_sha.lower()}")
    final = await placement.place(part, wanted, size, digest)
    ctx.progress(done, done)
    return {
        "path": str(final),
        "size": size,
        "sha256": digest,
        "resumed_from": resumed_from,
        "already_present": False,
    }


async def remove_partial(root: Path, job: Job) -> None:
    """Delete the partial file of download ``job`` (if any); errors are logged, not raised."""

    def run() -> None:
        try:
            wanted = resolve_destination(root, job.params, job.target)
        except ValueError:
            return  # never had a valid destination, so never wrote one
        _unlink(root.resolve(), part_path(wanted, job.id))

    try:
        await trio.to_thread.run_sync(run)
    except OSError as exc:
        log.warning("download %s: cannot delete the partial file: %s", job.id, exc)


def register_download(engine: Engine) -> None:
    """Register the ``download`` kind on ``engine`` (writing under its ``download_root``); its
    final hook deletes the partial file of a job that ends ``failed`` or ``cancelled``."""
    root = engine.download_root

    async def handler(ctx: JobContext) -> dict[str, Any]:
        job_id = ctx.job.id

        async def save(data: dict[str, Any] | None) -> None:
            await engine.save_checkpoint(job_id, data)

        return await download(ctx, root, save)

    def validate(spec: JobSpec) -> None:
        check_url(spec.target)
        resolve_destination(root, spec.params, spec.target)

    async def on_final(job: Job) -> None:
        if job.state in (JobState.FAILED, JobState.CANCELLED):
            await remove_partial(root, job)

    engine.register(KIND, handler, validate=validate, on_final=on_final)
