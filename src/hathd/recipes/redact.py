"""Keep credential values out of error messages and log lines.

Every secret a service session holds is registered here; :func:`redact` replaces each
occurrence (also URL-encoded) with ``***``, and a filter on the ``httpx``/``httpcore`` loggers
applies it to their records (httpx logs request URLs at INFO, which would show an API key
passed in a query string).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Iterable

_SECRETS: set[str] = set()
MASK = "***"


def register(secrets: Iterable[str]) -> None:
    """Add secrets (values shorter than 3 characters are ignored: too likely to be noise)."""
    for value in secrets:
        if len(value) >= 3:
            _SECRETS.add(value)
            quoted = urllib.parse.quote_plus(value)
            if quoted != value:
                _SECRETS.add(quoted)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every registered secret (and each of ``extra``) replaced by ``***``."""
    for value in sorted({*_SECRETS, *(e for e in extra if len(e) >= 3)}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts a record's formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            message = record.getMessage()
            cleaned = redact(message)
            if cleaned != message:
                record.msg = cleaned
                record.args = None
        return True


_FILTER = RedactingFilter()


def install_log_filter() -> None:
    """Attach the filter to the HTTP client loggers (idempotent)."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
