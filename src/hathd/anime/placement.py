"""Episode files under the library root: symlink-safe folders, per-job part files, atomic
placement, and recognising media by its first bytes.

Every path is walked from the library root one component at a time with
``O_DIRECTORY | O_NOFOLLOW`` directory descriptors (``openat``), so a symlink planted inside
the library cannot redirect a write outside it; files are opened relative to the folder's
descriptor with ``O_NOFOLLOW``. A finished part file gets its final name by ``linkat`` (which
fails when the name exists: an existing file is never replaced) followed by ``unlinkat`` of
the part name and an ``fsync`` of the folder, so the final name only ever holds a complete
file (POSIX ``link``/``rename`` atomicity).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from hathd.engine.download import part_path

MEDIA_EXTENSIONS = (".mp4", ".mkv", ".webm", ".ts")
"""Extensions an episode file may get (the first already present counts as the episode)."""

SNIFF_BYTES = 512
"""Bytes of a file's head :func:`media_extension` looks at."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(OSError):
    """A library folder component is a symlink or not a directory."""


def open_folder(root: Path, parts: Sequence[str], *, create: bool) -> int:
    """A directory descriptor of ``root/parts…`` (created when ``create``); the caller closes it.

    :raises UnsafePath: a component is a symlink or not a folder.
    :raises FileNotFoundError: a component is missing and ``create`` is false.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePath(exc.errno, f"not a plain folder: {part!r}") from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def part_name(name: str, job_id: str) -> str:
    """The hidden part file of job ``job_id`` writing episode ``name`` (no extension)."""
    return part_path(Path(name), job_id).name


def part_size(dfd: int, name: str) -> int:
    """Bytes in part file ``name`` of folder ``dfd`` (0 when absent)."""
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False).st_size
    except FileNotFoundError:
        return 0


def open_part(dfd: int, name: str, *, append: bool) -> int:
    """A write descriptor of part file ``name`` in ``dfd`` (appending, or truncated)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    flags |= os.O_APPEND if append else os.O_TRUNC
    return os.open(name, flags, 0o644, dir_fd=dfd)


def remove(dfd: int, name: str) -> None:
    """Delete ``name`` from folder ``dfd`` if present."""
    try:
        os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        pass


def existing_episode(dfd: int, stem: str) -> str | None:
    """The name of an episode file ``stem + ext`` already in ``dfd`` (a regular file), or
    ``None``."""
    for ext in MEDIA_EXTENSIONS:
        try:
            st = os.stat(stem + ext, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size > 0:
            return stem + ext
    return None


def place(dfd: int, part: str, final: str) -> None:
    """Give the complete part file its final name, atomically, never replacing a file.

    :raises FileExistsError: ``final`` exists (the part file is kept).
    """
    os.link(part, final, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
    os.unlink(part, dir_fd=dfd)
    os.fsync(dfd)


def media_extension(head: bytes) -> str | None:
    """The extension of the media whose file starts with ``head`` (up to
    :data:`SNIFF_BYTES`), or ``None`` when it is not a known video container.

    Signatures: ISO BMFF/MP4 (ISO/IEC 14496-12: a box size, then ``ftyp``/``moov``/``mdat``/
    ``free``/``skip``/``wide``), Matroska/WebM (EBML magic ``1A 45 DF A3``; ``webm`` doc type),
    MPEG transport stream (ISO/IEC 13818-1: sync byte ``0x47`` every 188 bytes).
    """
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide"):
        return ".mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ".webm" if b"webm" in head[:64] else ".mkv"
    if len(head) >= 189 and head[0] == 0x47 and head[188] == 0x47:
        return ".ts"
    return None
