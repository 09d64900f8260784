"""The library scan (sans-Trio): walk the anime folder with :func:`os.scandir`.

Each folder directly under the library root is one series. Its provider key comes from a
``key`` file in the folder (one line: the key, e.g. ``naruto``, optionally preceded by the site,
``aniworld.to naruto``), else the library matches the folder name to a known series. Episode
files anywhere below the folder (``Season 01/…``) are recognised by ``SxxEyy`` in their names
and a video extension. Symbolic links are not followed. An unreadable folder is reported in
:attr:`FolderScan.error` and the walk goes on.

Cost per folder: one ``open(O_DIRECTORY|O_NOFOLLOW)`` relative to the root's descriptor, one
``getdents`` pass (:func:`os.scandir` on that descriptor: the entry type comes with the name, no
``stat`` for it), and one ``fstatat`` relative to the folder's descriptor for each episode file
only (its size; ``find -printf %s`` makes one per entry). The name is tested on its extension
first, then with the precompiled ``SxxEyy`` pattern. Measured in ``bench/bench_anime.py``
(docs/anime.md, "Performance").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import attrs

from hathd.anime.naming import EPISODE_RE, VIDEO_EXTENSIONS

KEY_FILE = "key"
"""Name of the key file in a series folder."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@attrs.frozen
class FolderScan:
    """What one series folder holds: ``folder`` (its name), ``key``/``site`` from the key file
    (or ``None``), ``files`` ``{(season, number): (path relative to the root, size bytes)}``,
    ``error`` (the reason the folder or a part of it could not be read)."""

    folder: str
    key: str | None
    site: str | None
    files: dict[tuple[int, int], tuple[str, int]]
    error: str | None = None


def _read_key(name: str, dir_fd: int) -> tuple[str | None, str | None]:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as fh:
        words = fh.read(4096).decode("utf-8", "replace").split()
    if not words:
        return None, None
    if len(words) >= 2:
        return words[1], words[0]
    return words[0], None


def scan_folder(root: str, name: str, *, root_fd: int | None = None) -> FolderScan:
    """Scan one series folder ``root/name`` (``root_fd``: an open descriptor of ``root`` to
    resolve ``name`` from, else ``root`` is opened for this call)."""
    if root_fd is None:
        fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)
        try:
            return scan_folder(root, name, root_fd=fd)
        finally:
            os.close(fd)
    files: dict[tuple[int, int], tuple[str, int]] = {}
    key = site = None
    errors: list[str] = []
    stack = [name]
    search = EPISODE_RE.search
    video = VIDEO_EXTENSIONS
    stat = os.stat
    while stack:
        rel = stack.pop()
        try:
            fd = os.open(rel, _DIR_FLAGS, dir_fd=root_fd)
        except OSError as exc:
            errors.append(f"{rel}: {exc.strerror or exc}")
            continue
        try:
            with os.scandir(fd) as it:
                entries = list(it)
            for entry in entries:
                base = entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(f"{rel}/{base}")
                        continue
                    dot = base.rfind(".")
                    if dot <= 0 or base[dot:].lower() not in video:
                        is_key = base == KEY_FILE and rel == name
                        if is_key and entry.is_file(follow_symlinks=False):
                            key, site = _read_key(base, fd)
                        continue
                    match = search(base)
                    if match is None or not entry.is_file(follow_symlinks=False):
                        continue
                    size = stat(base, dir_fd=fd, follow_symlinks=False).st_size
                except OSError as exc:
                    errors.append(f"{rel}/{base}: {exc.strerror or exc}")
                    continue
                code = (int(match[1]), int(match[2]))
                if code not in files:
                    files[code] = (f"{rel}/{base}", size)
        except OSError as exc:
            errors.append(f"{rel}: {exc.strerror or exc}")
        finally:
            os.close(fd)
    return FolderScan(name, key, site, files, "; ".join(errors) or None)


def series_folders(root: str) -> list[str]:
    """Names of the folders directly under ``root`` (hidden ones and symlinks left out), sorted.

    :raises OSError: the root cannot be read.
    """
    with os.scandir(root) as it:
        return sorted(
            e.name for e in it if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
        )


def scan_library(
    root: str, on_folder: Callable[[int, int, FolderScan], None] | None = None
) -> Iterator[FolderScan]:
    """Scan every series folder; ``on_folder(index, total, result)`` after each one.

    :raises OSError: the root cannot be read.
    """
    names = series_folders(root)
    root_fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        for i, name in enumerate(names, 1):
            result = scan_folder(root, name, root_fd=root_fd)
            if on_folder is not None:
                on_folder(i, len(names), result)
            yield result
    finally:
        os.close(root_fd)
