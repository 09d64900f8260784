"""One gallery file GET, streamed to a temporary file while its SHA-1 is computed.

Timeouts restate ``docs/hath-protocol.md`` §6 (J162 ``GalleryFile``): 5 s to connect, 10 s
between reads, 300 s for the whole file. The body is hashed as it arrives; bodies up to
:data:`FLUSH_BYTES` stay in memory and reach the disk in one worker-thread call that writes
``.<name>.part`` and renames it to ``<name>`` if the caller's ``accept(sha1, size)`` says so;
larger bodies are flushed to ``.<name>.part`` as they come. A rejected or failed body leaves
nothing behind.

No fsync per file: a file that a crash leaves damaged fails its SHA-1 check on the next try
and is fetched again (docs/hath-protocol.md §6, "existing files are verified"), so durability is
bought once per gallery (``galleryinfo.txt``, the archive) instead of once per image.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import attrs
import httpx
import trio

from hathd import safepath
from hathd.hath import protocol

FLUSH_BYTES = 4 * 1024 * 1024
"""Bytes gathered in memory before one worker-thread write."""


class FetchError(Exception):
    """The GET failed: a malformed URL, a network error, a timeout, a status other than 200, or
    a short body."""


@attrs.frozen
class Fetched:
    """A body received: its hex SHA-1, size in bytes, and whether ``accept`` took it (then it
    is at its final name)."""

    sha1: str
    size: int
    accepted: bool


def part_path(dest: Path) -> Path:
    """The temporary name of ``dest`` while it downloads: ``.<name>.part`` beside it (within 255
    bytes, as gallery file names are capped at
    :data:`~hathd.gallery.naming.FILE_NAME_MAX_BYTES`)."""
    return dest.with_name(f".{dest.name}.part")


def _open(root: Path | None, path: Path) -> BinaryIO:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    if root is None:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    else:
        fd = safepath.open_under(root, path, flags, 0o644)
    return os.fdopen(fd, "wb")


def _write(fh: BinaryIO, chunks: list[bytes]) -> None:
    fh.writelines(chunks)


def _complete(
    root: Path | None,
    fh: BinaryIO | None,
    chunks: list[bytes],
    part: Path,
    dest: Path,
    keep: bool,
) -> None:
    if not keep:
        _abort(root, fh, part)
        return
    try:
        if fh is None:
            fh = _open(root, part)
        fh.writelines(chunks)
        fh.close()
        if root is None:
            os.replace(part, dest)
        else:
            safepath.rename_under(root, part, dest, replace=True)
    except BaseException:
        _abort(root, fh, part)
        raise


def _abort(root: Path | None, fh: BinaryIO | None, path: Path) -> None:
    if fh is not None:
        fh.close()
    if root is None:
        path.unlink(missing_ok=True)
        return
    try:
        safepath.unlink_under(root, path)
    except (FileNotFoundError, NotADirectoryError):
        pass


async def fetch_to_file(
    client: httpx.AsyncClient,
    url: str,
    dest: Path,
    accept: Callable[[str, int], bool],
    *,
    connect_timeout: float = 5.0,
    read_timeout: float = 10.0,
    file_timeout: float = 300.0,
    max_bytes: int = 1 << 30,
    root: Path | None = None,
) -> Fetched:
    """GET ``url``; if ``accept(sha1_hex, size)`` the body ends up at ``dest``.

    With ``root`` (the download root ``dest`` lies under) the temporary file is opened,
    renamed and removed through :mod:`hathd.safepath`, so a symlink planted below ``root`` is
    never followed (:class:`~hathd.safepath.UnsafePath`, an ``OSError``); without it only the
    file itself is opened with ``O_NOFOLLOW``.

    :raises FetchError: on any failure, a malformed ``url`` included (nothing is left on disk
        then). Cancellation removes the temporary file too and propagates.
    :raises OSError: the disk refused the accepted body (nothing is left on disk).
    """
    part = part_path(dest)
    digest = hashlib.sha1()
    size = 0
    fh: BinaryIO | None = None
    pending: list[bytes] = []
    pending_bytes = 0
    timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
    try:
        with trio.move_on_after(file_timeout) as scope:
            async with client.stream(
                "GET", url, headers={"User-Agent": protocol.USER_AGENT}, timeout=timeout
            ) as reply:
                if reply.status_code != 200:
                    raise FetchError(f"HTTP {reply.status_code}")
                async for chunk in reply.aiter_bytes():
                    digest.update(chunk)
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchError(f"body larger than {max_bytes} bytes")
                    pending.append(chunk)
                    pending_bytes += len(chunk)
                    if pending_bytes >= FLUSH_BYTES:
                        if fh is None:
                            fh = await trio.to_thread.run_sync(_open, root, part)
                        await trio.to_thread.run_sync(_write, fh, pending)
                        pending, pending_bytes = [], 0
        if scope.cancelled_caught:
            raise FetchError(f"no complete body within {file_timeout} s")
    except FetchError:
        await trio.to_thread.run_sync(_abort, root, fh, part)
        raise
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        await trio.to_thread.run_sync(_abort, root, fh, part)
        raise FetchError(f"{type(exc).__name__}: {exc}") from None
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_abort, root, fh, part)
        raise
    sha1 = digest.hexdigest()
    keep = accept(sha1, size)
    with trio.CancelScope(shield=True):
        await trio.to_thread.run_sync(_complete, root, fh, pending, part, dest, keep)
    return Fetched(sha1, size, keep)
