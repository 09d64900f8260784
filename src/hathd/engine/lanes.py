"""Politeness primitives (sans-IO): the token bucket and the per-domain lane settings.

A *lane* is the politeness unit of one domain: a concurrency limit (jobs running at once) and a
token bucket (``rate`` jobs/s refilled continuously, at most ``burst`` tokens banked; one token
per dispatched job). Settings come from the first matching domain pattern, in the style of
Scrapy's download slots (``DOWNLOAD_SLOTS`` per domain, Scrapy documentation "Settings";
docs/engine.md). No clock is read here: every method takes ``now`` in seconds (any monotonic
origin).
"""

from __future__ import annotations

import fnmatch
import math

import attrs

_EPS = 1e-9


@attrs.frozen
class LaneSettings:
    """Politeness of a lane: ``concurrency`` jobs at once; ``rate`` jobs/s (0: unlimited);
    ``burst`` tokens at most."""

    concurrency: int = 1
    rate: float = 0.0
    burst: int = 1


class TokenBucket:
    """A token bucket: ``rate`` tokens/s, capacity ``burst``; starts full at ``now``.

    A bucket with ``rate <= 0`` always admits. Over any interval of length ``T`` it admits at most
    ``rate * T + burst`` takes.
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = float(rate)
        self.burst = float(max(1, burst))
        self.tokens = self.burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_time(self, now: float) -> float:
        """Seconds until one token is available (0.0 when one is available now)."""
        if self.rate <= 0:
            return 0.0
        self._refill(now)
        if self.tokens >= 1.0 - _EPS:
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        """Spend one token (call only when :meth:`wait_time` is 0)."""
        if self.rate <= 0:
            return
        self._refill(now)
        self.tokens = max(0.0, self.tokens - 1.0)

    def is_full(self, now: float) -> bool:
        """True when the bucket holds ``burst`` tokens (forgetting it loses no state)."""
        if self.rate <= 0:
            return True
        self._refill(now)
        return self.tokens >= self.burst - _EPS


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
