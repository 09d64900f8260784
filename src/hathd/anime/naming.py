"""Media-server file names (the Plex/Jellyfin TV layout) and their parsing back.

``<Series> (<year>)/Season 01/<Series> - S01E01 - <title>``; films and specials go to
``Season 00``. Every component is sanitized: no ``/``, ``\\``, NUL or other control character,
never ``.`` or ``..``, at most :data:`MAX_COMPONENT` bytes of UTF-8.
"""

from __future__ import annotations

import re
import unicodedata

from hathd import safepath

MAX_COMPONENT = 200
"""Longest component in bytes of UTF-8 (ext4 allows 255; room for an extension and a part
suffix)."""

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".ts", ".avi", ".m4v"})
"""File extensions a scan counts as episodes."""

EPISODE_RE = re.compile(r"(?i)\bS(\d{1,3})[ ._-]?E(\d{1,4})\b")
"""``SxxEyy`` in a file name: group 1 the season, group 2 the episode (compiled once)."""
_FORBIDDEN = re.compile(r'[/\\\x00-\x1f\x7f-\x9f<>:"|?*]')


def sanitize(text: str, *, fallback: str = "untitled") -> str:
    """``text`` as one safe path component: control characters and ``/ \\ < > : " | ? *``
    become spaces, whitespace runs collapse, leading dots and trailing dots/spaces go; cut to
    :data:`MAX_COMPONENT` bytes on a character boundary; ``fallback`` when nothing is left."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") else c for c in text)
    text = _FORBIDDEN.sub(" ", text)
    text = " ".join(text.split()).lstrip(".").rstrip(". ")
    encoded = text.encode("utf-8")
    if len(encoded) > MAX_COMPONENT:
        text = encoded[:MAX_COMPONENT].decode("utf-8", "ignore").rstrip(". ")
    return text or fallback


def series_folder(name: str, year: int | None) -> str:
    """``<Series> (<year>)``, or ``<Series>`` when the year is unknown."""
    base = sanitize(name)
    return sanitize(f"{base} ({year})") if year else base


def season_folder(season: int) -> str:
    """``Season 01``; season 0 (films, specials) is ``Season 00``."""
    return f"Season {season:02d}"


def episode_dest(name: str, year: int | None, season: int, number: int, title: str) -> str:
    """The destination relative to the library root, without extension:
    ``<Series> (<year>)/Season 01/<Series> - S01E01 - <title>`` (`` - <title>`` left out when
    the title is empty)."""
    series = sanitize(name)
    stem = f"{series} - S{season:02d}E{number:02d}"
    if title.strip():
        stem = f"{stem} - {title}"
    return "/".join((series_folder(name, year), season_folder(season), sanitize(stem)))


def parse_episode_code(filename: str) -> tuple[int, int] | None:
    """``(season, episode)`` from a file name holding ``SxxEyy`` (case-insensitive; ``S1E2``,
    ``S01.E02``), or ``None``."""
    match = EPISODE_RE.search(filename)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


_YEAR_SUFFIX = re.compile(r"\s*\((\d{4})\)\s*$")


def folder_name_key(folder: str) -> str:
    """A comparison key of a series folder or series name: the ``(year)`` suffix dropped,
    case folded, only letters and digits kept (``"Attack on Titan (2013)"`` →
    ``"attackontitan"``)."""
    base = _YEAR_SUFFIX.sub("", folder)
    return "".join(c for c in base.casefold() if c.isalnum())


def folder_display_name(folder: str) -> str:
    """A series folder's name without its ``(year)`` suffix."""
    return _YEAR_SUFFIX.sub("", folder) or folder


def is_confined(dest: str) -> bool:
    """Whether ``dest`` (``/``-separated, relative) stays inside the library root: not
    absolute, no empty, ``.`` or ``..`` component, no NUL or other control character
    (:func:`hathd.safepath.is_confined`, the one home of that rule; symbolic links are refused
    when the file is placed)."""
    return safepath.is_confined(dest)
