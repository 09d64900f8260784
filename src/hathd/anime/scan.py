"""The library scan (sans-Trio): walk the anime folder with :func:`os.scandir`.

Each folder directly under the library root is one series. Its provider key comes from a
``key`` file in the folder (one line: the key, e.g. ``naruto``, optionally preceded by the site,
``aniworld.to naruto``), else the library matches the folder name to a known series. Episode
files anywhere below the folder (``Season 01/…``) are recognised by ``SxxEyy`` in their names
and a video extension. Symbolic links are not followed. An unreadable folder is reported in
:attr:`FolderScan.error` and the walk goes on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import attrs

from hathd.anime.naming import VIDEO_EXTENSIONS, parse_episode_code

KEY_FILE = "key"
"""Name of the key file in a series folder."""


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


def _read_key(path: str) -> tuple[str | None, str | None]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        words = fh.read(4096).decode("utf-8", "replace").split()
    if not words:
        return None, None
    if len(words) >= 2:
        return words[1], words[0]
    return words[0], None


def scan_folder(root: str, name: str) -> FolderScan:
    """Scan one series folder ``root/name``."""
    files: dict[tuple[int, int], tuple[str, int]] = {}
    key = site = None
    errors: list[str] = []
    stack = [name]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel)) as it:
                entries = list(it)
        except OSError as exc:
            errors.append(f"{rel}: {exc.strerror or exc}")
            continue
        for entry in entries:
            child = f"{rel}/{entry.name}"
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(child)
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                if rel == name and entry.name == KEY_FILE:
                    key, site = _read_key(entry.path)
                    continue
                ext = os.path.splitext(entry.name)[1].lower()
                if ext not in VIDEO_EXTENSIONS:
                    continue
                code = parse_episode_code(entry.name)
                if code is None:
                    continue
                size = entry.stat(follow_symlinks=False).st_size
            except OSError as exc:
                errors.append(f"{child}: {exc.strerror or exc}")
                continue
            files.setdefault(code, (child, size))
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
    for i, name in enumerate(names, 1):
        result = scan_folder(root, name)
        if on_folder is not None:
            on_folder(i, len(names), result)
        yield result
