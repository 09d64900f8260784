"""Symlink-safe file operations confined to a root folder.

A path checked once (``Path.resolve``) and used later is open to a race: a symlink planted in
between sends the ``mkdir``/``open``/``rename`` elsewhere. These functions never follow a
symlink below ``root``: they walk the relative path one component at a time from a descriptor
of ``root``, opening each folder with ``O_DIRECTORY | O_NOFOLLOW`` relative to its parent
(``openat(2)``; ``os.open(..., dir_fd=...)``), and create, open, link or rename the last
component relative to its folder's descriptor. ``root`` itself is trusted (it may be a
symlink: it comes from the configuration).

Paths are relative to ``root`` (``str`` or ``PurePath``); an absolute path must lie lexically
under ``root``. Every component must be a plain name: ``""``, ``.``, ``..`` and NUL bytes are
refused.

All functions block: call them through ``trio.to_thread.run_sync``.

Errors: :class:`UnsafePath` (an ``OSError``, ``errno`` ``ELOOP`` for a symlink met, ``EINVAL``
for a bad component or a path outside ``root``); other ``OSError`` as the system raises them
(``FileNotFoundError``, ``FileExistsError``, ``ENOSPC``, ...).
"""

from __future__ import annotations

import errno
import os
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(OSError):
    """A path that would leave its root: a symlink component (``ELOOP``), a ``..`` or empty
    component, or an absolute path outside the root (``EINVAL``)."""


def parts_under(root: str | os.PathLike[str], rel: str | os.PathLike[str]) -> tuple[str, ...]:
    """The components of ``rel`` below ``root`` (an absolute ``rel`` must lie lexically under
    ``root``).

    :raises UnsafePath: ``EINVAL``: an empty, ``.`` or ``..`` component, a NUL byte, or an
        absolute path outside ``root``.
    """
    path = PurePath(rel)
    if path.is_absolute():
        base = PurePath(os.path.abspath(root))
        if not path.is_relative_to(base):
            raise UnsafePath(errno.EINVAL, f"{str(path)!r} is not under {str(base)!r}")
        path = path.relative_to(base)
    parts = path.parts
    for part in parts:
        if part in ("", ".", "..") or "\x00" in part or "/" in part:
            raise UnsafePath(errno.EINVAL, f"{str(rel)!r}: {part!r} is not a plain name")
    return parts


def is_confined(rel: str) -> bool:
    """Whether the ``/``-separated relative path ``rel`` names a place under any root by its
    text alone: not empty, not absolute, no empty, ``.`` or ``..`` component, no NUL or other
    control character (Unicode category ``Cc``). Symbolic links are the business of the
    functions below, which refuse them when the path is used."""
    if not rel or rel.startswith("/"):
        return False
    for part in rel.split("/"):
        if part in ("", ".", ".."):
            return False
        if any(unicodedata.category(c) == "Cc" for c in part):
            return False
    return True


def _open_dir_at(dir_fd: int, name: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_symlink_at(dir_fd, name):
            raise UnsafePath(errno.ELOOP, f"{name!r} is a symlink") from None
        raise


def _is_symlink_at(dir_fd: int, name: str) -> bool:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    return (st.st_mode & 0o170000) == 0o120000


@contextmanager
def open_folder(
    root: str | os.PathLike[str], parts: tuple[str, ...], *, create: bool = False, mode: int = 0o777
) -> Iterator[int]:
    """A descriptor of the folder ``root/parts...`` reached without following a symlink below
    ``root`` (folders made, with ``mode``, when ``create``); closed on exit.

    :raises UnsafePath: a component is a symlink.
    :raises OSError: ``FileNotFoundError`` (a folder is missing and not ``create``),
        ``NotADirectoryError``, ...
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in parts:
            if create:
                try:
                    os.mkdir(name, mode, dir_fd=fd)
                except FileExistsError:
                    pass
            child = _open_dir_at(fd, name)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def makedirs_under(
    root: str | os.PathLike[str], rel: str | os.PathLike[str], mode: int = 0o777
) -> Path:
    """Create the folder ``rel`` under ``root`` with its parents (like ``mkdir -p``) and
    return its path; an existing folder is fine, a symlink anywhere below ``root`` is not.

    :raises UnsafePath: see the module docstring.
    :raises OSError: a component exists and is not a folder, or cannot be created.
    """
    parts = parts_under(root, rel)
    with open_folder(root, parts, create=True, mode=mode):
        pass
    return Path(root, *parts)


def open_under(
    root: str | os.PathLike[str],
    rel: str | os.PathLike[str],
    flags: int,
    mode: int = 0o666,
    *,
    create_parents: bool = False,
) -> int:
    """``os.open`` of the file ``rel`` under ``root`` with ``flags`` (plus ``O_NOFOLLOW`` and
    ``O_CLOEXEC``): the caller owns the returned descriptor. Parent folders are created when
    ``create_parents``.

    :raises UnsafePath: see the module docstring (also when the file itself is a symlink).
    :raises OSError: as ``open(2)`` raises it.
    """
    parts = parts_under(root, rel)
    if not parts:
        raise UnsafePath(errno.EINVAL, "no file name given")
    with open_folder(root, parts[:-1], create=create_parents) as dir_fd:
        try:
            return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePath(errno.ELOOP, f"{parts[-1]!r} is a symlink") from None
            raise


def rename_under(
    root: str | os.PathLike[str],
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    replace: bool = False,
) -> None:
    """Rename ``src`` to ``dst`` (both under ``root``), each folder reached without following
    a symlink. Without ``replace`` an existing ``dst`` is never overwritten, not even one
    created at the same moment (a hard link, which fails with ``EEXIST``, then the removal of
    ``src``); on a file system without hard links, an existence check and a rename. The
    folder of ``dst`` is fsynced.

    :raises FileExistsError: ``dst`` exists and not ``replace``.
    :raises UnsafePath: see the module docstring.
    """
    src_parts = parts_under(root, src)
    dst_parts = parts_under(root, dst)
    if not src_parts or not dst_parts:
        raise UnsafePath(errno.EINVAL, "no file name given")
    with (
        open_folder(root, src_parts[:-1]) as src_fd,
        open_folder(root, dst_parts[:-1]) as dst_fd,
    ):
        if replace:
            os.rename(src_parts[-1], dst_parts[-1], src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            os.fsync(dst_fd)
            return
        try:
            os.link(
                src_parts[-1],
                dst_parts[-1],
                src_dir_fd=src_fd,
                dst_dir_fd=dst_fd,
                follow_symlinks=False,
            )
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            if _exists_at(dst_fd, dst_parts[-1]):
                raise FileExistsError(errno.EEXIST, "exists", str(dst)) from None
            os.rename(src_parts[-1], dst_parts[-1], src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        else:
            os.unlink(src_parts[-1], dir_fd=src_fd)
        os.fsync(dst_fd)


def _exists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def unlink_under(root: str | os.PathLike[str], rel: str | os.PathLike[str]) -> bool:
    """Remove the file ``rel`` under ``root`` (a symlink there is removed, never followed);
    ``False`` when it did not exist.

    :raises UnsafePath: a folder on the way is a symlink (or see the module docstring).
    """
    parts = parts_under(root, rel)
    if not parts:
        raise UnsafePath(errno.EINVAL, "no file name given")
    try:
        with open_folder(root, parts[:-1]) as dir_fd:
            os.unlink(parts[-1], dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True
