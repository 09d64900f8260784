"""Pulling the readable text out of a mail message (sans-IO, pure functions).

A story-alert mail carries its links in ``text/plain`` and/or ``text/html`` parts. This module
walks the MIME tree of the raw message bytes (RFC 5322 / RFC 2045 via :mod:`email` with the
``compat32`` policy, which never raises on malformed structure) and returns the decoded text of
those parts; attachments and other types are skipped without being decoded. FanFicFare's own
``get_urls_from_imap`` does the same walk (``fanficfare/geturls.py``).
"""

from __future__ import annotations

import email
import email.message
import email.policy

import attrs

MAX_PART_CHARS = 1_000_000
"""Characters kept per text part; story alerts are a few KiB."""


@attrs.frozen
class MailText:
    """The readable parts of one message: plain-text bodies, HTML bodies, the subject."""

    plain: tuple[str, ...] = ()
    html: tuple[str, ...] = ()
    subject: str = ""

    @property
    def empty(self) -> bool:
        """No text part at all."""
        return not self.plain and not self.html


def _decode(part: email.message.Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # a broken transfer encoding: keep what the part says literally
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = payload.decode(charset, errors="replace")
    except LookupError:  # an unknown charset name
        text = payload.decode("utf-8", errors="replace")
    return text[:MAX_PART_CHARS]


def extract_text(raw: bytes) -> MailText:
    """Return the ``text/plain`` and ``text/html`` bodies of the message ``raw``.

    Parts with ``Content-Disposition: attachment`` are skipped, as is every non-text part.
    Malformed messages (bad boundaries, bad encodings, truncated bodies) give whatever text
    could be recovered, possibly none; this function does not raise on bad input.
    """
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception:
        return MailText()
    plain: list[str] = []
    html: list[str] = []
    try:
        parts = list(msg.walk())
    except Exception:
        parts = [msg]
    for part in parts:
        if part.is_multipart():
            continue
        disposition = (part.get("Content-Disposition") or "").lower()
        if disposition.startswith("attachment"):
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain":
            plain.append(_decode(part))
        elif ctype == "text/html":
            html.append(_decode(part))
    subject = str(msg.get("Subject") or "")
    return MailText(tuple(plain), tuple(html), subject)
