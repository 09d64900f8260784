"""Per-gallery ZIP archives and the small durable-write helpers of the downloader.

Blocking functions: call them through ``trio.to_thread.run_sync``.

The archive (as the py-hath seed's ``zip_compressor.py`` does per gallery) is
``<download root>/<gallery dir name>.zip`` holding the gallery's files and ``galleryinfo.txt``
flat at its root. It is written to ``.<name>.zip.part`` in the same folder, flushed and fsynced,
checked (:meth:`zipfile.ZipFile.testzip`), then renamed into place, so a crash never leaves a
half archive under the final name. Both names fit the 255-byte limit because gallery directory
names are capped at :data:`~hathd.gallery.naming.DIR_NAME_MAX_BYTES` (245) bytes. Images are
already compressed, so members are STORED; ``galleryinfo.txt`` is DEFLATED.

Every file is opened, created and renamed through :mod:`hathd.safepath` relative to the
download root: a symlink planted below the root (at a member's name, at the ``.part`` name, or
at the gallery folder) is refused with :class:`~hathd.safepath.UnsafePath` and nothing outside
the root is read or written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

from hathd import safepath

INFO_NAME = "galleryinfo.txt"
"""The INFORMATION text of a finished gallery (§6)."""

_COPY_BLOCK = 1 << 20
"""Bytes copied per read when a member goes into the archive."""

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
"""The earliest time a ZIP header can hold; older mtimes are clamped to it."""


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.part")


def _discard(root: Path, path: Path) -> None:
    with contextlib.suppress(OSError):
        safepath.unlink_under(root, path)


def write_atomic(root: Path, path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (under ``root``) through ``.<name>.part`` + fsync + rename.

    :raises UnsafePath: a symlink on the way or at either name.
    :raises OSError: the write or rename failed (the temporary file is removed).
    """
    tmp = _temporary(path)
    try:
        fd = safepath.open_under(root, tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        safepath.rename_under(root, tmp, path, replace=True)
    except BaseException:
        _discard(root, tmp)
        raise


def archive_path(gallery_dir: Path) -> Path:
    """``<gallery dir>.zip`` next to the directory."""
    return gallery_dir.with_name(gallery_dir.name + ".zip")


def _member_info(name: str, st: os.stat_result) -> zipfile.ZipInfo:
    stamp = time.localtime(st.st_mtime)[:6]
    info = zipfile.ZipInfo(name, date_time=max(stamp, _ZIP_EPOCH))
    info.file_size = st.st_size
    info.external_attr = (st.st_mode & 0xFFFF) << 16
    info.compress_type = zipfile.ZIP_DEFLATED if name == INFO_NAME else zipfile.ZIP_STORED
    return info


def _add_member(zf: zipfile.ZipFile, root: Path, gallery_dir: Path, name: str) -> None:
    fd = safepath.open_under(root, gallery_dir / name, os.O_RDONLY)
    with os.fdopen(fd, "rb") as src:
        st = os.fstat(src.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{name!r} in {gallery_dir.name!r} is not a regular file")
        with zf.open(_member_info(name, st), "w") as dst:
            shutil.copyfileobj(src, dst, _COPY_BLOCK)


def write_archive(root: Path, gallery_dir: Path, members: Sequence[str]) -> Path:
    """Write ``<gallery dir>.zip`` holding ``members`` (names inside ``gallery_dir``, which lies
    under ``root``).

    :returns: the archive path.
    :raises UnsafePath: a symlink on the way, at a member's name or at the archive's names.
    :raises OSError: a member is missing or not a regular file, or the disk failed; no archive
        is left behind.
    :raises zipfile.BadZipFile: the written archive does not read back.
    """
    dest = archive_path(gallery_dir)
    tmp = _temporary(dest)
    try:
        fd = safepath.open_under(root, tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w+b") as fh:
            with zipfile.ZipFile(fh, "w", allowZip64=True) as zf:
                for name in members:
                    _add_member(zf, root, gallery_dir, name)
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise zipfile.BadZipFile(f"member {bad!r} fails its CRC check")
            fh.flush()
            os.fsync(fh.fileno())
        safepath.rename_under(root, tmp, dest, replace=True)
    except BaseException:
        _discard(root, tmp)
        raise
    return dest


def remove_gallery_dir(gallery_dir: Path, root: Path) -> None:
    """Remove a gallery directory after archiving; refuses anything that is not a direct child
    of ``root``, and a symlink (``shutil.rmtree`` never follows one inside the folder).

    :raises ValueError: ``gallery_dir`` is not directly under ``root``.
    :raises OSError: ``gallery_dir`` is a symlink, or the removal failed.
    """
    if gallery_dir.resolve().parent != root.resolve():
        raise ValueError(f"{gallery_dir} is not inside {root}")
    shutil.rmtree(gallery_dir)
