"""Per-gallery ZIP archives and the small durable-write helpers of the downloader.

Blocking functions: call them through ``trio.to_thread.run_sync``.

The archive (as the py-hath seed's ``zip_compressor.py`` does per gallery) is
``<download root>/<gallery dir name>.zip`` holding the gallery's files and ``galleryinfo.txt``
flat at its root. It is written to ``.<name>.zip.part`` in the same folder, flushed and fsynced,
checked (:meth:`zipfile.ZipFile.testzip`), then renamed into place, so a crash never leaves a
half archive under the final name. Both names fit the 255-byte limit because gallery directory
names are capped at :data:`~hathd.gallery.naming.DIR_NAME_MAX_BYTES` (245) bytes. Images are
already compressed, so members are STORED; ``galleryinfo.txt`` is DEFLATED.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

INFO_NAME = "galleryinfo.txt"
"""The INFORMATION text of a finished gallery (§6)."""


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``.<name>.part`` + fsync + rename.

    :raises OSError: the write or rename failed (the temporary file is removed).
    """
    tmp = path.with_name(f".{path.name}.part")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def archive_path(gallery_dir: Path) -> Path:
    """``<gallery dir>.zip`` next to the directory."""
    return gallery_dir.with_name(gallery_dir.name + ".zip")


def write_archive(gallery_dir: Path, members: Sequence[str]) -> Path:
    """Write ``<gallery dir>.zip`` holding ``members`` (names inside ``gallery_dir``).

    :returns: the archive path.
    :raises OSError: a member is missing or the disk failed; no archive is left behind.
    :raises zipfile.BadZipFile: the written archive does not read back.
    """
    dest = archive_path(gallery_dir)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
            for name in members:
                method = zipfile.ZIP_DEFLATED if name == INFO_NAME else zipfile.ZIP_STORED
                zf.write(gallery_dir / name, arcname=name, compress_type=method)
        with zipfile.ZipFile(tmp) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"member {bad!r} fails its CRC check")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)
    return dest


def remove_gallery_dir(gallery_dir: Path, root: Path) -> None:
    """Remove a gallery directory after archiving; refuses anything that is not a direct child
    of ``root``.

    :raises ValueError: ``gallery_dir`` is not directly under ``root``.
    """
    if gallery_dir.resolve().parent != root.resolve():
        raise ValueError(f"{gallery_dir} is not inside {root}")
    shutil.rmtree(gallery_dir)
