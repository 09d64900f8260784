"""A sans-IO ``multipart/form-data`` encoder for streaming a file from disk.

The body layout is RFC 7578 (``--boundary CRLF headers CRLF CRLF content CRLF`` per part,
``--boundary--`` CRLF at the end). Field names and file names are escaped as the HTML
standard's form-data encoding does (``"`` → ``%22``, CR → ``%0D``, LF → ``%0A``). The encoder
returns a list of segments (bytes, or a :class:`FileSegment` the shell reads in chunks) and
the exact ``Content-Length``, so the upload is never held in memory and servers that refuse
chunked bodies still accept it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from pathlib import Path

import attrs


@attrs.frozen
class TextPart:
    """A text field: ``name`` and its ``value``."""

    name: str
    value: str


@attrs.frozen
class FilePart:
    """A file field: ``name``, the file's ``path`` and ``size`` (bytes), the ``filename`` and
    ``content_type`` to declare."""

    name: str
    path: Path
    size: int
    filename: str
    content_type: str


@attrs.frozen
class FileSegment:
    """``size`` bytes of ``path`` from offset 0, to be streamed by the caller."""

    path: Path
    size: int


Segment = bytes | FileSegment

_SURROGATE = re.compile("[\ud800-\udfff]")


def utf8(text: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate (a file name byte that is not UTF-8, as
    ``os.fsdecode`` keeps it, or a JSON ``\\ud800`` escape) becomes U+FFFD instead of
    failing."""
    return _SURROGATE.sub("\ufffd", text).encode("utf-8")


def _quote(text: str) -> str:
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def new_boundary() -> str:
    """A random boundary (32 hex digits) that cannot occur by chance in the content."""
    return "hathd" + secrets.token_hex(16)


def encode(parts: Sequence[TextPart | FilePart], boundary: str) -> tuple[list[Segment], int]:
    """The body segments and total length in bytes of ``parts`` under ``boundary``.

    Names, file names and values are sent as UTF-8; characters that cannot be (lone
    surrogates from a file name that is not UTF-8) are sent as U+FFFD: encoding never fails.
    """
    segments: list[Segment] = []
    length = 0

    def add(chunk: bytes) -> None:
        nonlocal length
        if segments and isinstance(segments[-1], bytes):
            segments[-1] = segments[-1] + chunk
        else:
            segments.append(chunk)
        length += len(chunk)

    for part in parts:
        if isinstance(part, TextPart):
            add(
                utf8(
                    f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(part.name)}"'
                    "\r\n\r\n"
                )
                + utf8(part.value)
                + b"\r\n"
            )
        else:
            add(
                utf8(
                    f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(part.name)}";'
                    f' filename="{_quote(part.filename)}"\r\n'
                    f"Content-Type: {part.content_type}\r\n\r\n"
                )
            )
            segments.append(FileSegment(part.path, part.size))
            length += part.size
            add(b"\r\n")
    add(f"--{boundary}--\r\n".encode())
    return segments, length


def content_type(boundary: str) -> str:
    """The ``Content-Type`` header value for a body encoded with ``boundary``."""
    return f"multipart/form-data; boundary={boundary}"
