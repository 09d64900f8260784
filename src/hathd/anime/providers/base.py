"""The provider interface: what the library needs from a site, parsed without I/O.

A provider builds requests (URL, form) and parses bodies into :mod:`hathd.anime.model`
records; the fetching lives in :mod:`hathd.anime.fetch`. A third site is one module that
implements :class:`Provider`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from hathd.anime.model import EpisodeInfo, HosterLink, SearchHit, SeriesInfo


class ProviderError(Exception):
    """A provider request or page failed (HTTP error, redirect loop, unreadable body)."""


class MarkupChanged(ProviderError):
    """A page lacks what the parser looks for; ``field`` names it, ``url`` is the page.

    Raised instead of returning an empty result, so a changed page is never taken as "no
    episodes".
    """

    def __init__(self, site: str, page: str, field: str, url: str = "") -> None:
        super().__init__(
            f"{site}: {page} page markup changed: {field} not found" + (f" ({url})" if url else "")
        )
        self.site = site
        self.page = page
        self.field = field
        self.url = url


class Provider(Protocol):
    """A provider site (sans-IO)."""

    @property
    def site(self) -> str:
        """The site's name, e.g. ``aniworld.to`` (stored with each series)."""
        ...

    @property
    def base_url(self) -> str:
        """The configured base URL, e.g. ``https://aniworld.to`` (mirror domains allowed)."""
        ...

    @property
    def domain(self) -> str:
        """The host of :attr:`base_url`: the politeness lane of its requests and jobs."""
        ...

    def search_request(self, text: str) -> tuple[str, dict[str, str]]:
        """The search URL and its form fields."""
        ...

    def parse_search(self, body: bytes) -> list[SearchHit]:
        """Matches of the search answer. :raises MarkupChanged: not the expected JSON."""
        ...

    def key_from_url(self, url: str) -> str | None:
        """The series key of a series/season/episode URL of this site, else ``None``."""
        ...

    def series_url(self, key: str) -> str:
        """The series page."""
        ...

    def parse_series(self, html: str, key: str, url: str) -> SeriesInfo:
        """The series page. :raises MarkupChanged: naming the missing field."""
        ...

    def parse_season(self, html: str, season: int, url: str) -> list[EpisodeInfo]:
        """A season page's episodes. :raises MarkupChanged: naming the missing field."""
        ...

    def parse_episode(self, html: str, url: str) -> list[HosterLink]:
        """An episode page's hosters. :raises MarkupChanged: naming the missing field."""
        ...


def find_provider(providers: Sequence[Provider], url: str) -> Provider | None:
    """The provider whose :meth:`~Provider.key_from_url` understands ``url``."""
    for provider in providers:
        if provider.key_from_url(url) is not None:
            return provider
    return None
