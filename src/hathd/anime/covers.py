"""Series covers served by hathd itself (the pages' Content-Security-Policy allows images
from the node only: ``img-src 'self' data:``).

A cover is fetched once from the provider's cover URL through the provider fetcher (the
per-domain politeness gate, redirects checked, :data:`MAX_COVER` bytes at most), checked to be
an image — the ``Content-Type`` must be one of :data:`IMAGE_TYPES` and the bytes must start
with that format's signature — and kept in ``<state>/covers/<key>-<url hash><ext>``. A new
cover URL of the series gives a new file (the old one is removed). A failed fetch is not tried
again for :data:`RETRY_AFTER` seconds, so a broken cover costs the provider one request an
hour, not one per page view.

Cover URLs are taken only from the series' own provider host (or a subdomain of it) over
``http``/``https``, so a provider page cannot name arbitrary hosts; redirects from there are
followed as for the provider's pages (at most 5, each through the gate).

Signatures: PNG (ISO/IEC 15948, ``\\x89PNG\\r\\n\\x1a\\n``), JPEG (ITU T.81, ``FF D8 FF``),
GIF (``GIF87a``/``GIF89a``), WebP (RIFF container with ``WEBP`` form type, RFC 9649).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import trio

from hathd.anime.fetch import ProviderFetcher
from hathd.anime.providers.base import ProviderError

log = logging.getLogger(__name__)

MAX_COVER: Final = 2 << 20
"""Largest cover in bytes."""

RETRY_AFTER: Final = 3600.0
"""Seconds before a failed cover is fetched again."""

IMAGE_TYPES: Final = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
}
"""Accepted ``Content-Type`` values and the file extension each is kept with."""

PLACEHOLDER_SVG: Final = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="200" height="300" viewBox="0 0 200 300">'
    b'<rect width="200" height="300" fill="#d9d9de"/>'
    b'<rect x="60" y="110" width="80" height="60" rx="6" fill="none" stroke="#6b6b76"'
    b' stroke-width="6"/><circle cx="85" cy="132" r="8" fill="#6b6b76"/>'
    b'<path d="M66 166l26-24 16 14 12-10 14 20z" fill="#6b6b76"/>'
    b'<text x="100" y="210" font-family="sans-serif" font-size="18" text-anchor="middle"'
    b' fill="#3c3c44">no cover</text></svg>'
)
"""The image answered when a series has no usable cover (``image/svg+xml``)."""

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,199}$")


class CoverError(ProviderError):
    """A cover could not be fetched or is not an image."""


def sniff(body: bytes) -> str | None:
    """The image type whose signature ``body`` starts with, else None."""
    if body.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if body.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if body[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "image/webp"
    return None


def check_image(content_type: str, body: bytes) -> str:
    """The image type of a fetched cover: ``content_type`` (parameters ignored) must be one of
    :data:`IMAGE_TYPES` and agree with the bytes' signature.

    :raises CoverError: naming what is wrong.
    """
    declared = content_type.split(";", 1)[0].strip().lower()
    if declared not in IMAGE_TYPES:
        raise CoverError(f"not an image: Content-Type {declared or '(none)'!r}")
    found = sniff(body)
    if found != declared:
        raise CoverError(f"the bytes are not {declared} (found {found or 'no known image'})")
    return declared


def allowed_url(url: str, domain: str) -> bool:
    """Whether ``url`` is ``http``/``https`` on ``domain`` or a subdomain of it."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    domain = domain.lower()
    return parts.scheme in ("http", "https") and (host == domain or host.endswith("." + domain))


def _url_tag(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


class CoverCache:
    """Covers of the library, cached in ``folder``.

    :param fetcher: the provider fetcher (its politeness gate paces the requests).
    :param clock: monotonic seconds (tests may replace it).
    """

    def __init__(
        self, folder: Path, fetcher: ProviderFetcher, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.folder = folder
        self.fetcher = fetcher
        self.clock = clock
        self._failed: dict[tuple[str, str], float] = {}
        self._locks: dict[str, trio.Lock] = {}

    def _find(self, key: str, tag: str) -> tuple[Path, str] | None:
        for mime, ext in IMAGE_TYPES.items():
            path = self.folder / f"{key}-{tag}{ext}"
            if path.is_file():
                return path, mime
        return None

    def _store(self, key: str, tag: str, mime: str, body: bytes) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for old in self.folder.glob(f"{key}-*"):
            old.unlink(missing_ok=True)
        final = self.folder / f"{key}-{tag}{IMAGE_TYPES[mime]}"
        tmp = final.with_name(f".{final.name}.tmp")
        tmp.write_bytes(body)
        tmp.replace(final)

    async def get(self, key: str, url: str | None, domain: str) -> tuple[bytes, str] | None:
        """``(bytes, content type)`` of series ``key``'s cover at ``url`` (a provider URL on
        ``domain``), from the cache or fetched now; None when there is no usable cover (no
        URL, a foreign host, a failed or refused fetch — logged once per :data:`RETRY_AFTER`).
        Never raises for a bad cover."""
        if url is None or not _KEY.match(key) or not allowed_url(url, domain):
            return None
        tag = _url_tag(url)
        lock = self._locks.setdefault(key, trio.Lock())
        async with lock:  # one fetch per series at a time; the others find the file
            found = await trio.to_thread.run_sync(self._find, key, tag)
            if found is not None:
                path, mime = found
                return await trio.Path(path).read_bytes(), mime
            failed_at = self._failed.get((key, tag))
            if failed_at is not None and self.clock() - failed_at < RETRY_AFTER:
                return None
            try:
                body, content_type = await self.fetcher.fetch("GET", url, limit=MAX_COVER)
                mime = check_image(content_type, body)
                await trio.to_thread.run_sync(self._store, key, tag, mime, body)
            except (ProviderError, OSError) as exc:
                log.warning("anime: cover of %s unusable (%s): %s", key, url, exc)
                self._failed[(key, tag)] = self.clock()
                return None
            self._failed.pop((key, tag), None)
            return body, mime
