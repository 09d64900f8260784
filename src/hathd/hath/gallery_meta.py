"""The gallery downloader's queue reply and gallery metadata, parsed without I/O.

``fetchqueue`` on ``/15/dl?`` answers with a raw body that is *not* OK-prefixed
(``docs/hath-protocol.md`` §1.3, §6; J162 ``GalleryDownloader.initializeNewGalleryMeta``,
RS ``gallery_downloader.rs``):

* ``INVALID_REQUEST`` — the server rejected the request (bad key, unknown client);
* ``NO_PENDING_DOWNLOADS`` — the queue is empty, the downloader stops;
* otherwise gallery metadata, UTF-8 text lines::

      GID 123456
      FILECOUNT 3
      MINXRES org
      TITLE Some title
      FILELIST
      1 7001 org 0123…(40 hex) jpg 001
      2 7002 org unknown png page two
      INFORMATION
      free text, kept verbatim (newlines included) for galleryinfo.txt

Header lines are ``<KEY> <value>`` split on the first space; blank lines before
``INFORMATION`` are skipped. File lines are ``<page> <fileindex> <xres> <sha1|unknown>
<filetype> <filename>`` split on spaces into at most six fields, so the filename may contain
spaces; pages are 1-based. The metadata is valid only with ``gid > 0``, ``filecount > 0``,
``minxres`` (``org`` or digits) and ``TITLE`` set (J162; §6). The Java client needs MINXRES
before TITLE because it builds the directory name while parsing; this parser reads the whole
header first, so the order does not matter here.

Stricter than the reference, because a bad line must not become a bad file name or a silent
gap: every page in ``1..filecount`` appears exactly once, the SHA-1 is 40 hex digits or
``unknown``, and the file type is a short alphanumeric token. Anything else raises
:class:`GalleryMetaError` with the line number, so the caller can log and count it.
"""

from __future__ import annotations

import re

import attrs

NO_PENDING_DOWNLOADS = "NO_PENDING_DOWNLOADS"
"""Raw reply: the queue is empty (§6)."""

INVALID_REQUEST = "INVALID_REQUEST"
"""Raw reply: the server rejected the request (§6)."""

UNKNOWN_HASH = "unknown"
"""The FILELIST hash of a file whose SHA-1 the server does not know (§6)."""

_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
_XRES_RE = re.compile(r"^(org|[0-9]{1,5})$")
_FILETYPE_RE = re.compile(r"^[A-Za-z0-9]{1,8}$")
_INT_RE = re.compile(r"^[0-9]{1,10}$")


class GalleryMetaError(ValueError):
    """A ``fetchqueue`` reply that is neither a known status nor valid metadata.

    ``line`` is the 1-based line number of the problem, or ``None`` for a whole-reply problem.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


@attrs.frozen
class GalleryFile:
    """One FILELIST entry (§6).

    ``sha1`` is lowercase hex, or ``None`` when the server sent ``unknown``; ``xres`` is
    ``org`` or a width in pixels as text. ``name`` is ``<filename>.<filetype>`` as the file is
    stored (the caller makes it filesystem-safe).
    """

    page: int
    fileindex: int
    xres: str
    sha1: str | None
    filetype: str
    filename: str

    @property
    def name(self) -> str:
        """``<filename>.<filetype>`` (J162 ``GalleryFile``)."""
        return f"{self.filename}.{self.filetype}"


@attrs.frozen
class GalleryMeta:
    """A gallery to download: ``gid``, ``filecount``, ``minxres`` (``org`` or digits),
    the raw ``title``, the files in page order, and the INFORMATION text."""

    gid: int
    filecount: int
    minxres: str
    title: str
    files: tuple[GalleryFile, ...]
    information: str

    @property
    def xres_title(self) -> str:
        """The directory postfix part: ``""`` for ``org``, else ``-<minxres>x`` (§6)."""
        return "" if self.minxres == "org" else f"-{self.minxres}x"

    @property
    def queue_add(self) -> str:
        """The ``add`` of the next ``fetchqueue`` that marks this gallery done:
        ``<gid>;<minxres>`` (§1.3, §6)."""
        return f"{self.gid};{self.minxres}"


@attrs.frozen
class NoPendingDownloads:
    """The queue is empty."""


@attrs.frozen
class InvalidRequest:
    """The server rejected the request."""


QueueReply = GalleryMeta | NoPendingDownloads | InvalidRequest
"""What :func:`parse_queue_reply` returns."""


def parse_queue_reply(body: bytes | str) -> QueueReply:
    """Parse a raw ``fetchqueue`` reply body (bytes are decoded as UTF-8, §1.1).

    :returns: :class:`NoPendingDownloads`, :class:`InvalidRequest` or :class:`GalleryMeta`.
    :raises GalleryMetaError: an empty body, bytes that are not UTF-8, or malformed metadata.
    """
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GalleryMetaError(f"reply is not UTF-8: {exc}") from None
    else:
        text = body
    status = text.strip()
    if status == NO_PENDING_DOWNLOADS:
        return NoPendingDownloads()
    if status == INVALID_REQUEST:
        return InvalidRequest()
    if not status:
        raise GalleryMetaError("empty reply")
    return parse_gallery_meta(text)


def _int_field(value: str, what: str, lineno: int) -> int:
    if not _INT_RE.match(value):
        raise GalleryMetaError(f"{what} is not a non-negative integer: {value[:40]!r}", lineno)
    return int(value)


def _parse_file_line(line: str, lineno: int) -> GalleryFile:
    parts = line.split(" ", 5)
    if len(parts) != 6 or not parts[5]:
        raise GalleryMetaError(f"file line needs 6 fields: {line[:80]!r}", lineno)
    page_s, index_s, xres, sha1, filetype, filename = parts
    page = _int_field(page_s, "page", lineno)
    fileindex = _int_field(index_s, "fileindex", lineno)
    if not _XRES_RE.match(xres):
        raise GalleryMetaError(f"bad xres {xres[:20]!r}", lineno)
    if sha1 == UNKNOWN_HASH:
        digest: str | None = None
    elif _SHA1_RE.match(sha1.lower()):
        digest = sha1.lower()
    else:
        raise GalleryMetaError(f"bad sha1 {sha1[:48]!r}", lineno)
    if not _FILETYPE_RE.match(filetype):
        raise GalleryMetaError(f"bad filetype {filetype[:20]!r}", lineno)
    return GalleryFile(page, fileindex, xres, digest, filetype.lower(), filename)


def parse_gallery_meta(text: str) -> GalleryMeta:
    """Parse gallery metadata (the third kind of ``fetchqueue`` reply, §6).

    :raises GalleryMetaError: a missing or invalid header value, a bad FILELIST line, or pages
        that are not exactly ``1..filecount``.
    """
    state = 0  # 0 header, 1 file list, 2 information
    header: dict[str, tuple[str, int]] = {}
    files: list[GalleryFile] = []
    info_lines: list[str] = []
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw if state == 2 else raw.rstrip("\r")
        if state == 0 and line == "FILELIST":
            state = 1
            continue
        if state == 1 and line == "INFORMATION":
            state = 2
            continue
        if state < 2 and not line.strip():
            continue
        if state == 0:
            key, _, value = line.partition(" ")
            if key in ("GID", "FILECOUNT", "MINXRES", "TITLE"):
                header[key] = (value, lineno)
            # Unknown header keys are ignored, as the reference does.
        elif state == 1:
            files.append(_parse_file_line(line, lineno))
        else:
            info_lines.append(line)

    def need(key: str) -> tuple[str, int]:
        if key not in header:
            raise GalleryMetaError(f"missing {key}")
        return header[key]

    gid_s, gid_line = need("GID")
    gid = _int_field(gid_s.strip(), "GID", gid_line)
    count_s, count_line = need("FILECOUNT")
    filecount = _int_field(count_s.strip(), "FILECOUNT", count_line)
    minxres, xres_line = need("MINXRES")
    minxres = minxres.strip()
    title, title_line = need("TITLE")
    if gid <= 0:
        raise GalleryMetaError("GID must be > 0", gid_line)
    if filecount <= 0:
        raise GalleryMetaError("FILECOUNT must be > 0", count_line)
    if not _XRES_RE.match(minxres):
        raise GalleryMetaError(f"bad MINXRES {minxres[:20]!r}", xres_line)
    if not title.strip():
        raise GalleryMetaError("empty TITLE", title_line)
    if state == 0:
        raise GalleryMetaError("no FILELIST")
    pages = sorted(f.page for f in files)
    if pages != list(range(1, filecount + 1)):
        raise GalleryMetaError(
            f"FILELIST pages must be exactly 1..{filecount}; got {len(files)} lines"
        )
    files.sort(key=lambda f: f.page)
    information = "\n".join(info_lines)
    return GalleryMeta(gid, filecount, minxres, title, tuple(files), information)
