"""How long a server asks us to wait: the one ``Retry-After`` parser.

``Retry-After`` is delta-seconds or an HTTP-date (RFC 9110 §10.2.3); ``RateLimit-Reset``
(delta-seconds, IETF draft "RateLimit header fields for HTTP") is read when ``Retry-After`` is
absent or unreadable.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import httpx


def parse_retry_after(
    headers: httpx.Headers | Mapping[str, str], now: float | None = None
) -> float | None:
    """Seconds (``>= 0``) to wait from the response ``headers`` (names matched
    case-insensitively); ``now`` is epoch seconds for an HTTP-date (default: the wall clock).
    ``None`` when neither header is present and readable."""
    if not isinstance(headers, httpx.Headers):
        headers = httpx.Headers(headers)
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            return max(0.0, when.timestamp() - (time.time() if now is None else now))
    reset = headers.get("ratelimit-reset")
    if reset and reset.strip().isdigit():
        return float(reset.strip())
    return None
