"""Directory and file names of downloaded galleries (sans-IO).

The gallery directory is ``<download root>/<title> [<gid><xresTitle>]`` with ``xresTitle`` =
``""`` for ``org`` and ``-<minxres>x`` otherwise (``docs/hath-protocol.md`` §6; J162
``GalleryDownloader``). Facts restated from there:

* title cleaning removes ``*``, ``"``, ``\\``, ``<``, ``>`` and the literal three-character
  sequence ``:|?`` (a regex quirk of the reference: single ``:``, ``|``, ``?`` are kept), then
  collapses whitespace runs to one space and trims;
* 1.6.3+ caps title + postfix at ``max_filename_length`` (default 125) UTF-16 code units,
  cutting the title on code points and appending ``...``; RS also caps at 255 bytes, which is
  the ext4/xfs name limit, so hathd applies both, with room for the names it derives (below);
* the directory's parent must be the download root (a traversal guard); a name that would
  escape it, or whose ``mkdir`` fails, falls back to ``<gid><xresTitle>``.

File names come from the FILELIST (``<filename>.<filetype>``); the reference writes them as
given. hathd replaces ``/``, ``\\`` and NUL by ``_`` and refuses ``.``/``..`` so a hostile list
cannot write outside the gallery directory.

Every name hathd creates fits the 255-byte limit: a file downloads as ``.<name>.part``, the
archive is ``<dir>.zip``, written as ``.<dir>.zip.part``. So a gallery directory name is at
most :data:`DIR_NAME_MAX_BYTES` (245) bytes and a file name at most
:data:`FILE_NAME_MAX_BYTES` (249) bytes of UTF-8.
"""

from __future__ import annotations

import re

_STRIP_RE = re.compile(r'\*|"|\\|<|>|:\|\?')
_SPACE_RE = re.compile(r"\s+")
_UNSAFE_FILE_RE = re.compile(r"[/\\\x00]")

NAME_MAX_BYTES = 255
"""The longest directory entry name (bytes of UTF-8) on common Linux filesystems."""

PART_SUFFIX = ".part"
"""Suffix of a file being written; its name is ``.<final name>.part``."""

ZIP_SUFFIX = ".zip"
"""Suffix of a gallery archive ``<dir name>.zip``."""

DIR_NAME_MAX_BYTES = NAME_MAX_BYTES - len("." + ZIP_SUFFIX + PART_SUFFIX)
"""The longest gallery directory name (245 bytes), so that ``.<dir>.zip.part`` fits."""

FILE_NAME_MAX_BYTES = NAME_MAX_BYTES - len("." + PART_SUFFIX)
"""The longest gallery file name (249 bytes), so that ``.<name>.part`` fits."""

ELLIPSIS = "..."


def clean_title(title: str) -> str:
    """Remove ``* " \\ < >`` and the sequence ``:|?``, collapse whitespace, trim (§6)."""
    return _SPACE_RE.sub(" ", _STRIP_RE.sub("", title)).strip()


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units (what Java's ``String.length()`` counts)."""
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def _fits(text: str, max_units: int) -> bool:
    return utf16_len(text) <= max_units and len(text.encode("utf-8")) <= DIR_NAME_MAX_BYTES


def postfix(gid: int, xres_title: str) -> str:
    """`` [<gid><xresTitle>]`` (§6)."""
    return f" [{gid}{xres_title}]"


def fallback_dir_name(gid: int, xres_title: str) -> str:
    """``<gid><xresTitle>``, used when the titled name is unusable (§6)."""
    return f"{gid}{xres_title}"


def gallery_dir_name(title: str, gid: int, xres_title: str, max_filename_length: int = 125) -> str:
    """The cleaned, capped directory name ``<title> [<gid><xresTitle>]``.

    ``max_filename_length`` is in UTF-16 code units (1.6.3+ default 125); the result is also at
    most :data:`DIR_NAME_MAX_BYTES` (245) UTF-8 bytes, so the archive's temporary name
    ``.<name>.zip.part`` fits in 255. If the title has to be cut it is cut on code points and
    ``...`` is appended (§6). An empty cleaned title gives :func:`fallback_dir_name`.
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


def is_safe_entry_name(name: str, max_bytes: int = NAME_MAX_BYTES) -> bool:
    """Whether ``name`` is a single directory entry: not empty, not ``.``/``..``, no ``/``,
    ``\\`` or NUL, at most ``max_bytes`` (default 255) UTF-8 bytes."""
    return (
        bool(name)
        and name not in (".", "..")
        and not _UNSAFE_FILE_RE.search(name)
        and len(name.encode("utf-8")) <= max_bytes
    )


def safe_file_name(filename: str, filetype: str, page: int) -> str:
    """The on-disk name of a gallery file: ``<filename>.<filetype>`` with ``/``, ``\\`` and NUL
    replaced by ``_``; a name that is still unusable (empty, dot-only, longer than
    :data:`FILE_NAME_MAX_BYTES`, or a reserved name of ours) becomes ``<page>.<filetype>`` with
    the page zero-padded to 4 digits."""
    name = f"{_UNSAFE_FILE_RE.sub('_', filename)}.{filetype}"
    reserved = name == "galleryinfo.txt" or name.startswith(".") or name.endswith(PART_SUFFIX)
    if not is_safe_entry_name(name, FILE_NAME_MAX_BYTES) or reserved:
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
