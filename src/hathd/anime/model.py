"""The anime library's records: what a provider says about a series, and what the store keeps.

Pure data (attrs, frozen); times are seconds since the epoch, sizes bytes. Season ``0`` holds
films and specials.
"""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class SearchHit:
    """One search result: provider ``site``, series ``key`` (URL slug), ``name``, ``url``."""

    site: str
    key: str
    name: str
    url: str
    description: str = ""


@attrs.frozen
class SeasonRef:
    """A season listed on a series page: ``number`` (0 = films/specials) and its page ``url``."""

    number: int
    url: str


@attrs.frozen
class SeriesInfo:
    """A series page: name, description, cover URL, start ``year``, ``status`` (``ongoing`` or
    ``completed``), and its seasons."""

    key: str
    name: str
    description: str
    cover_url: str | None
    year: int | None
    status: str
    seasons: tuple[SeasonRef, ...]


@attrs.frozen
class EpisodeInfo:
    """An episode row of a season page: ``season``, ``number``, ``title``, episode page ``url``,
    ``languages`` offered (library keys such as ``de-dub``)."""

    season: int
    number: int
    title: str
    url: str
    languages: tuple[str, ...] = ()


@attrs.frozen
class HosterLink:
    """One hoster of an episode page: ``hoster`` name (lower case), ``language`` key, and the
    provider's absolute redirect ``url``."""

    hoster: str
    language: str
    url: str

    def to_json(self) -> dict[str, Any]:
        """``{"hoster", "language", "url"}`` — one candidate of an ``anime-episode`` job."""
        return {"hoster": self.hoster, "language": self.language, "url": self.url}


@attrs.frozen
class Series:
    """A stored series."""

    key: str
    name: str
    site: str
    folder: str | None = None
    description: str = ""
    status: str = "ongoing"
    cover_url: str | None = None
    year: int | None = None
    followed: bool = False
    checked_at: float | None = None


@attrs.frozen
class Episode:
    """A stored episode: offered by the provider (``offered``) and/or present on disk
    (``file_path`` relative to the library root, ``size`` bytes)."""

    series_key: str
    season: int
    number: int
    title: str = ""
    languages: tuple[str, ...] = ()
    url: str | None = None
    offered: bool = False
    file_path: str | None = None
    size: int | None = None
    downloaded_at: float | None = None

    @property
    def present(self) -> bool:
        """Whether a file of the episode lies in the library."""
        return self.file_path is not None

    @property
    def code(self) -> str:
        """``S01E05``."""
        return f"S{self.season:02d}E{self.number:02d}"
