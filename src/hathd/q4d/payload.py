"""Queue4Download payloads on the wire (sans-IO): ``Down`` events in, ``Label`` messages out.

Source: ``Q4D/Queue4Download.sh`` ``CreateQEvent`` (``printf "%s\\t%s\\t%s\\n" PATH HASH TYPE``,
sent with ``mosquitto_pub -m``, so the trailing newline is usually stripped by the shell) and
``Q4D/LFTPtransfer.sh`` (``printf "%s\\t%s\\n" HASH LABEL`` on ``Label``); davidgibbons'
``app/mqtt_handler.py`` accepts three or more TAB-separated fields and ignores the rest. The
hash ``NotUsed`` means the torrent client gave none: no label is sent for it.

Accepted: UTF-8 text, at least three TAB-separated fields, a non-empty path whose last
component is a real name (not ``.``/``..``) and that holds no control characters. Anything
else is a :class:`Rejected` with a :class:`RejectReason` (used as the counter label).
"""

from __future__ import annotations

import posixpath
from enum import StrEnum

import attrs

NOT_USED = "NotUsed"
"""The hash Q4D sends when the torrent client supplied none."""

MAX_PAYLOAD = 64 * 1024
"""Largest accepted payload in bytes; a path is at most 4096 bytes on Linux (PATH_MAX)."""


class RejectReason(StrEnum):
    """Why a ``Down`` payload was refused."""

    TOO_LARGE = "too_large"
    BAD_ENCODING = "bad_encoding"
    TOO_FEW_FIELDS = "too_few_fields"
    EMPTY_PATH = "empty_path"
    BAD_PATH = "bad_path"


@attrs.frozen
class DownEvent:
    """A completed torrent: remote ``path`` (as lftp will find it), info-``hash``, type ``code``."""

    path: str
    hash: str
    code: str

    @property
    def has_hash(self) -> bool:
        """False for an empty hash or ``NotUsed``: such an event gets no label."""
        return bool(self.hash) and self.hash != NOT_USED

    @property
    def name(self) -> str:
        """The last path component: the file or folder created locally."""
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def dedupe_key(self) -> str:
        """The hash, or ``path:<path>`` when there is none."""
        return self.hash if self.has_hash else f"path:{self.path}"


@attrs.frozen
class Rejected:
    """A refused payload: the reason (a counter label) and a human-readable detail."""

    reason: RejectReason
    detail: str


def _has_control(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def parse_down(payload: bytes) -> DownEvent | Rejected:
    """Parse a ``Down`` payload ``PATH\\tHASH\\tTYPE[\\t…]`` (one trailing newline allowed)."""
    if len(payload) > MAX_PAYLOAD:
        return Rejected(RejectReason.TOO_LARGE, f"{len(payload)} bytes > {MAX_PAYLOAD}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(RejectReason.BAD_ENCODING, f"not UTF-8: {exc.reason} at byte {exc.start}")
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    fields = text.split("\t")
    if len(fields) < 3:
        return Rejected(
            RejectReason.TOO_FEW_FIELDS, f"{len(fields)} TAB-separated field(s), need 3"
        )
    path, hash_, code = fields[0], fields[1].strip(), fields[2].strip()
    if not path.strip():
        return Rejected(RejectReason.EMPTY_PATH, "the path field is empty")
    if _has_control(path) or _has_control(hash_) or _has_control(code):
        return Rejected(RejectReason.BAD_PATH, "control characters in a field")
    if posixpath.basename(path.rstrip("/")) in ("", ".", ".."):
        return Rejected(RejectReason.BAD_PATH, f"no file or folder name in {path!r}")
    return DownEvent(path, hash_, code)


def format_label(hash_: str, label: str) -> bytes:
    """The ``Label`` payload ``HASH\\tLABEL`` (UTF-8, no trailing newline)."""
    return f"{hash_}\t{label}".encode()


def format_down(path: str, hash_: str, code: str) -> bytes:
    """A ``Down`` payload as the seedbox script sends it (for tests and tools)."""
    return f"{path}\t{hash_}\t{code}".encode()
