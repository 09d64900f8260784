"""Blocking filesystem steps of the downloader: the gallery directory, hashing, free space.

Call these through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

from hathd import safepath
from hathd.gallery.naming import DIR_NAME_MAX_BYTES, is_safe_entry_name

log = logging.getLogger(__name__)

HASH_CHUNK = 1024 * 1024


def make_gallery_dir(root: Path, name: str, fallback: str) -> Path:
    """Create (or reuse) ``root/name`` and return it; fall back to ``root/fallback`` when
    ``name`` is not a single safe entry of at most
    :data:`~hathd.gallery.naming.DIR_NAME_MAX_BYTES` bytes, would resolve outside ``root`` (a
    symlink), or its ``mkdir`` fails (§6 traversal guard and fallback).

    :raises OSError: the fallback directory cannot be created either.
    """
    root.mkdir(parents=True, exist_ok=True)
    if is_safe_entry_name(name, DIR_NAME_MAX_BYTES):
        try:
            # no symlink followed: hathd.safepath opens it with O_NOFOLLOW from root's fd
            return safepath.makedirs_under(root, name)
        except safepath.UnsafePath:
            log.warning("gallery directory %r leaves the download root; using %r", name, fallback)
        except OSError as exc:
            log.warning("cannot create gallery directory %r (%s); using %r", name, exc, fallback)
    else:
        log.warning("unusable gallery directory name %r; using %r", name, fallback)
    try:
        return safepath.makedirs_under(root, fallback)
    except safepath.UnsafePath:
        raise OSError(f"fallback directory {root / fallback} leaves the download root") from None


def sha1_of_file(path: Path) -> tuple[str, int]:
    """``(hex SHA-1, size in bytes)`` of a file.

    :raises OSError: unreadable.
    """
    digest = hashlib.sha1()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def existing_digest(path: Path) -> tuple[str, int] | None:
    """The SHA-1 and size of ``path`` if it is a regular file, else ``None`` (unreadable files
    count as absent)."""
    try:
        if not path.is_file() or path.is_symlink():
            return None
        return sha1_of_file(path)
    except OSError:
        return None


def entry_names(path: Path) -> set[str]:
    """The names in directory ``path`` (empty if it cannot be listed)."""
    try:
        return set(os.listdir(path))
    except OSError:
        return set()


def free_bytes(path: Path) -> int:
    """Bytes available to us on the filesystem holding ``path``."""
    return shutil.disk_usage(path).free


def remove_quietly(path: Path) -> None:
    """Unlink ``path`` if it exists; errors are logged, not raised."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)
