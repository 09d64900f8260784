"""Hoster resolvers: from a hoster's embed page to a direct media URL or an HLS playlist.

Each hoster has a small sans-IO module (:mod:`.voe`, :mod:`.vidoza`, :mod:`.doodstream`,
:mod:`.streamtape`, :mod:`.filemoon`) with ``resolve(html, page_url) -> Stream | Fetch``: it
reads the page text and returns either the :class:`Stream` to download or, when the hoster
needs one more request (VOE's mirror redirect, Doodstream's ``pass_md5``), a :class:`Fetch`
naming the URL to get and the function that continues from its body. No resolver does I/O;
the episode job (:mod:`hathd.anime.episode`) performs the requests through the per-domain
politeness gate.

A page whose markup no longer holds what a resolver looks for raises :class:`HosterChanged`
naming the hoster and the missing field, so a changed site reads as such in the job's error
instead of a generic parse failure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal
from urllib.parse import urljoin, urlsplit

import attrs

StreamKind = Literal["direct", "hls"]


@attrs.frozen
class Stream:
    """What to download: ``url`` (absolute http(s)), ``kind`` (``"direct"``: one media file;
    ``"hls"``: an HLS playlist, RFC 8216) and the request ``headers`` the hoster expects
    (typically ``Referer``)."""

    url: str
    kind: StreamKind
    headers: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Fetch:
    """One more request a resolver needs: GET ``url`` with ``headers``, then call
    ``then(body, final_url)`` with the response text (at most :data:`MAX_PAGE_BYTES`) and the
    URL it came from; that returns the :class:`Stream` or another :class:`Fetch`."""

    url: str
    headers: dict[str, str]
    then: Callable[[str, str], Stream | Fetch]


class HosterError(Exception):
    """A hoster could not be resolved; ``hoster`` names it."""

    def __init__(self, hoster: str, message: str) -> None:
        super().__init__(f"{hoster}: {message}")
        self.hoster = hoster


class HosterChanged(HosterError):
    """The hoster's page no longer has the expected structure: ``missing`` names what was not
    found (e.g. ``"sourcesCode src"``)."""

    def __init__(self, hoster: str, missing: str) -> None:
        super().__init__(hoster, f"page markup changed: {missing} not found")
        self.missing = missing


class UnknownHoster(HosterError):
    """No resolver is registered under this name."""

    def __init__(self, hoster: str) -> None:
        super().__init__(hoster, f"no resolver (known: {', '.join(sorted(RESOLVERS))})")


Resolver = Callable[[str, str], Stream | Fetch]
"""``resolver(html, page_url) -> Stream | Fetch``; raises :class:`HosterChanged`."""

MAX_PAGE_BYTES = 2 * 1024 * 1024
"""The most of a hoster page (or a follow-up body) read, in bytes; the rest is ignored."""

MAX_FETCH_STEPS = 3
"""How many :class:`Fetch` follow-ups one resolution may take before it is refused."""


def absolute(hoster: str, url: str, page_url: str, field: str) -> str:
    """``url`` made absolute against ``page_url`` (``//host/x`` gets the page's scheme).

    :raises HosterChanged: ``field`` when the result is not an http(s) URL with a host.
    """
    full = urljoin(page_url, url.strip())
    parts = urlsplit(full)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HosterChanged(hoster, f"{field} (not an http(s) URL: {url[:80]!r})")
    return full


def origin(url: str) -> str:
    """``scheme://host[:port]/`` of ``url`` (the ``Referer`` hosters check)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


def _registry() -> dict[str, Resolver]:
    from hathd.anime.hosters import doodstream, filemoon, streamtape, vidoza, voe

    return {
        "voe": voe.resolve,
        "vidoza": vidoza.resolve,
        "doodstream": doodstream.resolve,
        "streamtape": streamtape.resolve,
        "filemoon": filemoon.resolve,
    }


RESOLVERS: dict[str, Resolver] = {}
"""Resolver by hoster name (lower case, as the provider's candidate list names it)."""


def normalize(hoster: str) -> str:
    """The registry key of a hoster name as providers spell it (``"VOE"``, ``"Dood Stream"``)."""
    key = "".join(ch for ch in hoster.lower() if ch.isalnum())
    return {"dood": "doodstream", "streamtapecom": "streamtape"}.get(key, key)


def resolve(hoster: str, html: str, page_url: str) -> Stream | Fetch:
    """Resolve ``hoster``'s page ``html`` fetched from ``page_url``.

    :raises UnknownHoster: no resolver has this name.
    :raises HosterChanged: the page lacks what the resolver looks for (names the field).
    """
    resolver = RESOLVERS.get(normalize(hoster))
    if resolver is None:
        raise UnknownHoster(hoster)
    return resolver(html, page_url)


RESOLVERS.update(_registry())
