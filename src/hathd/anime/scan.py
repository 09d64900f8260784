"""The library scan (sans-Trio): walk the anime folder with :func:`os.listdir`.

Each folder directly under the library root is one series. Its provider key comes from a
``key`` file in the folder (one line: the key, e.g. ``naruto``, optionally preceded by the site,
``aniworld.to naruto``), else the library matches the folder name to a known series. Episode
files anywhere below the folder (``Season 01/…``) are recognised by ``SxxEyy`` in their names
and a video extension. Symbolic links are not followed. An unreadable folder (or an entry that
vanishes between the listing and its ``stat``) is reported in :attr:`FolderScan.error` and the
walk goes on.

Cost per folder: one ``open(O_DIRECTORY|O_NOFOLLOW)`` relative to the root's descriptor, one
``getdents`` pass (:func:`os.listdir` on that descriptor: names only, no ``DirEntry`` object
per name), one pattern pass over the names joined with ``\\0`` (which no file name holds) that
finds every episode name with its ``SxxEyy`` at once, and one ``fstatat`` relative to the
folder's descriptor per entry (an episode file's size and type; another entry's type: a folder
to walk into, the ``key`` file), as ``find -printf %s`` makes. The digest of the folder's files
(:func:`files_digest`) is computed here too, in the walk's thread. Measured in
``bench/bench_anime.py`` (docs/anime.md, "Performance").
"""

from __future__ import annotations

import marshal
import os
import re
from collections.abc import Callable, Iterator
from hashlib import blake2b
from stat import S_ISDIR, S_ISREG

import attrs

from hathd.anime.naming import EPISODE_RE, VIDEO_EXTENSIONS

KEY_FILE = "key"
"""Name of the key file in a series folder."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _episodes_pattern() -> re.Pattern[str]:
    """:data:`~hathd.anime.naming.EPISODE_RE` and a video extension, over names joined with
    ``\\0`` (never part of a file name): one match per episode name, anchored at its start
    (after a ``\\0`` or at the string's start) and its end (before its ``\\0``); groups: the
    name, the season, the episode. The lazy prefix finds the leftmost ``SxxEyy`` of the name,
    as :meth:`re.Pattern.search` does on the name alone."""
    code = EPISODE_RE.pattern.removeprefix("(?i)")
    exts = "|".join(sorted(re.escape(e[1:]) for e in VIDEO_EXTENSIONS))
    return re.compile(rf"(?i)(?<![^\0])([^\0]*?{code}[^\0]*\.(?:{exts}))\0")


_EPISODES = _episodes_pattern()


@attrs.frozen
class FolderScan:
    """What one series folder holds: ``folder`` (its name), ``key``/``site`` from the key file
    (or ``None``), ``files`` ``{(season, number): (path relative to the root, size bytes)}``,
    ``error`` (the reason the folder or a part of it could not be read), ``digest``
    (:func:`files_digest` of ``files``, computed in the walk's thread)."""

    folder: str
    key: str | None
    site: str | None
    files: dict[tuple[int, int], tuple[str, int]]
    error: str | None = None
    digest: str = ""


def files_digest(files: dict[tuple[int, int], tuple[str, int]]) -> str:
    """A digest (BLAKE2b, 16 bytes, hex) of a series' episode files ``{(season, number):
    (relative path, size bytes)}`` in their order (the folder's listing order, stable while
    the folder is unchanged). Equal digests mean equal files; a different order or a new
    Python (``marshal`` format) only makes the series be written in full once more. ``marshal``
    format 2: from format 3 on, an object referenced elsewhere is written as a back-reference,
    so the bytes would depend on which objects happen to be shared, not on the values alone."""
    return blake2b(marshal.dumps(files, 2), digest_size=16).hexdigest()


def _read_key(name: str, dir_fd: int) -> tuple[str | None, str | None]:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        words = os.read(fd, 4096).decode("utf-8", "replace").split()
    finally:
        os.close(fd)
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
    findall = _EPISODES.findall
    stat = os.stat
    while stack:
        rel = stack.pop()
        try:
            fd = os.open(rel, _DIR_FLAGS, dir_fd=root_fd)
        except OSError as exc:
            errors.append(f"{rel}: {exc.strerror or exc}")
            continue
        try:
            names = os.listdir(fd)
            # one pattern pass over the whole listing finds the episode names (in listing
            # order) and their SxxEyy; only the other names need a look at their type
            found = findall("\0".join(names) + "\0") if names else []
            if len(found) != len(names):
                episodes = {f[0] for f in found}
                for base in names:
                    if base in episodes:
                        continue
                    try:
                        st = stat(base, dir_fd=fd, follow_symlinks=False)
                    except OSError as exc:
                        errors.append(f"{rel}/{base}: {exc.strerror or exc}")
                        continue
                    if S_ISDIR(st.st_mode):
                        stack.append(f"{rel}/{base}")
                    elif base == KEY_FILE and rel == name and S_ISREG(st.st_mode):
                        key, site = _read_key(base, fd)
            prefix = rel + "/"
            for base, season, number in found:
                try:
                    st = stat(base, dir_fd=fd, follow_symlinks=False)
                except OSError as exc:
                    errors.append(f"{rel}/{base}: {exc.strerror or exc}")
                    continue
                mode = st.st_mode
                if S_ISREG(mode):
                    code = (int(season), int(number))
                    if code not in files:
                        files[code] = (prefix + base, st.st_size)
                elif S_ISDIR(mode):
                    stack.append(prefix + base)
        except OSError as exc:
            errors.append(f"{rel}: {exc.strerror or exc}")
        finally:
            os.close(fd)
    return FolderScan(name, key, site, files, "; ".join(errors) or None, files_digest(files))


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
