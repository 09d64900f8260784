"""``[anime]``: the anime library's folder, providers, preferences and rescan schedule."""

from __future__ import annotations

import re
from typing import Any

import attrs

from hathd.confutil import FieldError, in_range

LANGUAGES = ("de-dub", "de-sub", "en-sub", "en-dub")
"""The language keys of the library (docs/anime.md lists how each site's ids map to them)."""

_TIME_RE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def _languages(_inst: Any, attribute: attrs.Attribute[Any], value: list[str]) -> None:
    bad = [v for v in value if v not in LANGUAGES]
    if bad or not value:
        raise FieldError(
            attribute.name, f"expected a non-empty list of {', '.join(LANGUAGES)}; got {bad}"
        )


def _time_of_day(_inst: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and _TIME_RE.fullmatch(value) is None:
        raise FieldError(attribute.name, f"expected HH:MM (24 h), got {value!r}")


def _url(_inst: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not re.fullmatch(r"https?://[^/\s]+/?", value):
        raise FieldError(attribute.name, f"expected a base URL like https://host, got {value!r}")


@attrs.frozen
class AnimeConfig:
    """``[anime]``: the library folder, provider base URLs, language and hoster preferences,
    and the watchlist rescan schedule."""

    enabled: bool = False
    """Run the anime library (``anime-episode`` jobs, watchlist rescans, ``/api/v1/anime``)."""
    library: str | None = None
    """The anime folder (one folder per series); unset = ``<state_dir>/anime``."""
    aniworld_url: str = attrs.field(default="https://aniworld.to", validator=_url)
    """Base URL of the aniworld.to provider (a mirror domain may be given)."""
    sto_url: str = attrs.field(default="https://s.to", validator=_url)
    """Base URL of the s.to provider (a mirror domain may be given)."""
    languages: list[str] = attrs.field(
        factory=lambda: ["de-dub", "en-sub", "de-sub"], validator=_languages
    )
    """Languages in order of preference: ``de-dub``, ``de-sub``, ``en-sub``, ``en-dub``; an
    episode offered in none of them is not queued."""
    hosters: list[str] = attrs.field(
        factory=lambda: ["voe", "vidoza", "filemoon", "streamtape", "doodstream"]
    )
    """Hosters in order of preference; hosters not listed come after, in page order."""
    rescan_interval: float = attrs.field(default=21600.0, validator=in_range(0, 30 * 86400))
    """Seconds between two rescans of followed series; 0 = only at ``rescan_at``/by hand."""
    rescan_at: str | None = attrs.field(default=None, validator=_time_of_day)
    """Time of day (``HH:MM``, local time) of a daily rescan instead of the interval."""
    request_timeout: float = attrs.field(default=30.0, validator=in_range(1, 600))
    """Seconds a provider page request may take."""
    priority: int = attrs.field(default=0, validator=in_range(-1000, 1000))
    """Priority of the episode jobs the library queues."""
