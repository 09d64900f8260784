"""Directory and file names of downloaded galleries (sans-IO).

The gallery directory is ``<download root>/<title> [<gid><xresTitle>]`` with ``xresTitle`` =
``""`` for ``org`` and ``-<minxres>x`` otherwise (``docs/hath-protocol.md`` §6; J162
``GalleryDownloader``). Facts restated from there:

* title cleaning removes ``*``, ``"``, ``\\``, ``<``, ``>`` and the literal three-character
  sequence ``:|?`` (a regex quirk of the reference: single ``:``, ``|``, ``?`` are kept), then
  collapses whitespace runs to one space and trims;
* 1.6.3+ caps title + postfix at ``max_filename_length`` (default 125) UTF-16 code units,
  cutting the title on code points and appending ``...``; RS also caps at 255 bytes, which is
  the ext4/xfs name limit, so hathd applies both;
* the directory's parent must be the download root (a traversal guard); a name that would
  escape it, or whose ``mkdir`` fails, falls back to ``<gid><xresTitle>``.

File names come from the FILELIST (``<filename>.<filetype>``); the reference writes them as
given. hathd replaces ``/``, ``\\`` and NUL by ``_`` and refuses ``.``/``..`` so a hostile list
cannot write outside the gallery directory.
"""

from __future__ import annotations

import re

_STRIP_RE = re.compile(r'\*|"|\\|<|>|:\|\?')
_SPACE_RE = re.compile(r"\s+")
_UNSAFE_FILE_RE = re.compile(r"[/\\\x00]")

NAME_MAX_BYTES = 255
"""The longest directory entry name (bytes of UTF-8) on common Linux filesystems."""

ELLIPSIS = "..."


def clean_title(title: str) -> str:
    """Remove ``* " \\ < >`` and the sequence ``:|?``, collapse whitespace, trim (§6)."""
    return _SPACE_RE.sub(" ", _STRIP_RE.sub("", title)).strip()


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units (what Java's ``String.length()`` counts)."""
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def _fits(text: str, max_units: int) -> bool:
    return utf16_len(text) <= max_units and len(text.encode("utf-8")) <= NAME_MAX_BYTES


def postfix(gid: int, xres_title: str) -> str:
    """`` [<gid><xresTitle>]`` (§6)."""
    return f" [{gid}{xres_title}]"


def fallback_dir_name(gid: int, xres_title: str) -> str:
    """``<gid><xresTitle>``, used when the titled name is unusable (§6)."""
    return f"{gid}{xres_title}"


def gallery_dir_name(title: str, gid: int, xres_title: str, max_filename_length: int = 125) -> str:
    """The cleaned, capped directory name ``<title> [<gid><xresTitle>]``.

    ``max_filename_length`` is in UTF-16 code units (1.6.3+ default 125); the result is also at
    most 255 UTF-8 bytes. If the title has to be cut it is cut on code points and ``...`` is
    appended (§6). An empty cleaned title gives :func:`fallback_dir_name`.
    """
    cleaned = clean_title(title)
    post = postfix(gid, xres_title)
    if not cleaned:
        return fallback_dir_name(gid, xres_title)
    if _fits(cleaned + post, max_filename_length):
        return cleaned + post
    cut = cleaned
    while cut and not _fits(cut + ELLIPSIS + post, max_filename_length):
        cut = cut[:-1]
    cut = cut.rstrip()
    if not cut:
        return fallback_dir_name(gid, xres_title)
    return cut + ELLIPSIS + post


def is_safe_entry_name(name: str) -> bool:
    """Whether ``name`` is a single directory entry: not empty, not ``.``/``..``, no ``/``,
    ``\\`` or NUL, at most 255 UTF-8 bytes."""
    return (
        bool(name)
        and name not in (".", "..")
        and not _UNSAFE_FILE_RE.search(name)
        and len(name.encode("utf-8")) <= NAME_MAX_BYTES
    )


def safe_file_name(filename: str, filetype: str, page: int) -> str:
    """The on-disk name of a gallery file: ``<filename>.<filetype>`` with ``/``, ``\\`` and NUL
    replaced by ``_``; a name that is still unusable (empty, dot-only, too long, or a reserved
    name of ours) becomes ``<page>.<filetype>`` with the page zero-padded to 4 digits."""
    name = f"{_UNSAFE_FILE_RE.sub('_', filename)}.{filetype}"
    reserved = name == "galleryinfo.txt" or name.startswith(".") or name.endswith(".part")
    if not is_safe_entry_name(name) or reserved:
        name = f"{page:04d}.{filetype}"
    return name


def file_names(entries: list[tuple[str, str, int]]) -> list[str]:
    """On-disk names for ``(filename, filetype, page)`` entries, in order: each from
    :func:`safe_file_name`, a later duplicate (compared case-insensitively) becoming
    ``<page>.<filetype>``, then ``<page>-<n>.<filetype>`` until unique."""
    seen: set[str] = set()
    out: list[str] = []
    for filename, filetype, page in entries:
        name = safe_file_name(filename, filetype, page)
        n = 0
        while name.casefold() in seen:
            n += 1
            name = f"{page:04d}.{filetype}" if n == 1 else f"{page:04d}-{n}.{filetype}"
        seen.add(name.casefold())
        out.append(name)
    return out
