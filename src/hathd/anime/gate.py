"""Per-domain politeness for single requests a job makes to domains other than its own.

The engine's lanes (:mod:`hathd.engine.lanes`, :mod:`hathd.engine.coordinator`) admit whole
jobs by the job's ``domain``. An episode job is dispatched under its provider's domain but
also requests hoster pages and media servers; :class:`DomainGate` applies the same lane
settings (first matching ``[engine.lanes]`` pattern: ``concurrency`` requests at once,
``rate`` requests/s with ``burst``) to each such request, with one
``trio.CapacityLimiter`` and one :class:`~hathd.engine.lanes.TokenBucket` per domain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from hathd.engine.lanes import LaneSettings, LaneTable
from hathd.tokenbucket import TokenBucket


class DomainGate:
    """Request politeness per domain.

    :param settings_for: the lane settings of a domain (e.g. the engine's
        ``LaneTable.settings_for``); default: a :class:`LaneTable` with ``default``.
    :param default: settings for every domain when ``settings_for`` is not given
        (default: 2 requests at once, 2 requests/s, burst 4).
    """

    def __init__(
        self,
        settings_for: Callable[[str], LaneSettings] | None = None,
        *,
        default: LaneSettings | None = None,
    ) -> None:
        if settings_for is None:
            table = LaneTable(default or LaneSettings(concurrency=2, rate=2.0, burst=4))
            settings_for = table.settings_for
        self._settings_for = settings_for
        self._limiters: dict[str, trio.CapacityLimiter] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._token_lock: dict[str, trio.Lock] = {}

    def _parts(self, domain: str) -> tuple[trio.CapacityLimiter, TokenBucket, trio.Lock]:
        key = domain.lower()
        limiter = self._limiters.get(key)
        if limiter is None:
            settings = self._settings_for(key)
            limiter = self._limiters[key] = trio.CapacityLimiter(max(1, settings.concurrency))
            self._buckets[key] = TokenBucket(settings.rate, settings.burst, trio.current_time())
            self._token_lock[key] = trio.Lock()
        return limiter, self._buckets[key], self._token_lock[key]

    @asynccontextmanager
    async def request(self, domain: str) -> AsyncIterator[None]:
        """Hold one of ``domain``'s request slots and spend one of its tokens (waiting for
        both) for the ``async with`` body."""
        limiter, bucket, lock = self._parts(domain)
        async with limiter:
            async with lock:  # waiters take tokens in arrival order
                wait = bucket.wait_time(trio.current_time())
                if wait > 0:  # the lock keeps others from taking the token meanwhile
                    await trio.sleep(wait)
                bucket.take(trio.current_time())
            yield

    def busy(self) -> dict[str, int]:
        """Requests in flight per domain (domains with none left out)."""
        return {
            d: int(lim.borrowed_tokens) for d, lim in self._limiters.items() if lim.borrowed_tokens
        }
