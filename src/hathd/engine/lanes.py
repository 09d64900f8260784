"""Politeness settings (sans-IO): the per-domain lane table.

A *lane* is the politeness unit of one domain: a concurrency limit (jobs running at once) and a
token bucket (:class:`hathd.tokenbucket.TokenBucket`: ``rate`` jobs/s refilled continuously, at
most ``burst`` tokens banked; one token per dispatched job). Settings come from the first
matching domain pattern, in the style of Scrapy's download slots (``DOWNLOAD_SLOTS`` per domain,
Scrapy documentation "Settings"; docs/engine.md).
"""

from __future__ import annotations

import fnmatch
import math

import attrs


@attrs.frozen
class LaneSettings:
    """Politeness of a lane: ``concurrency`` jobs at once; ``rate`` jobs/s (0: unlimited);
    ``burst`` tokens at most."""

    concurrency: int = 1
    rate: float = 0.0
    burst: int = 1


def _specificity(pattern: str) -> int:
    return sum(1 for ch in pattern if ch not in "*?[]")


class LaneTable:
    """Maps a domain to its :class:`LaneSettings` through fnmatch patterns.

    An exact pattern wins; otherwise the matching pattern with the most literal characters (the
    later one on a tie); otherwise ``default``.
    """

    def __init__(self, default: LaneSettings | None = None) -> None:
        self.default = default or LaneSettings()
        self._patterns: dict[str, LaneSettings] = {}
        self._cache: dict[str, LaneSettings] = {}

    def set(self, pattern: str, settings: LaneSettings) -> None:
        """Declare (or replace) the settings of ``pattern`` (``"*"`` replaces the default)."""
        if pattern == "*":
            self.default = settings
        else:
            self._patterns[pattern.lower()] = settings
        self._cache.clear()

    def patterns(self) -> dict[str, LaneSettings]:
        """Every declared pattern and its settings, ``"*"`` included."""
        return {"*": self.default, **self._patterns}

    def settings_for(self, domain: str) -> LaneSettings:
        """The settings of ``domain`` (case-insensitive)."""
        key = domain.lower()
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        found = self._patterns.get(key)
        if found is None:
            best = -1
            for pattern, settings in self._patterns.items():
                if fnmatch.fnmatchcase(key, pattern):
                    spec = _specificity(pattern)
                    if spec >= best:
                        best, found = spec, settings
        result = found or self.default
        if len(self._cache) < 100_000:
            self._cache[key] = result
        return result


INFINITY = math.inf
