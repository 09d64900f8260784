"""Politeness per download host: a concurrency limit per host, held through the pacing pause.

The engine's lanes (``rt.engine.add_lane``) order whole gallery jobs; the files of a gallery
come from whatever image servers ``dlfetch`` names, so each download host gets its own
``trio.CapacityLimiter`` here. The downloader keeps its slot while it sleeps the pacing delay
(1 s after a download, 5 s after a failure; §6), so a host never sees more than
``host_concurrency`` requests plus their pauses at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio


@attrs.frozen
class HostGateStatistics:
    """Hosts seen, and requests in flight (or pausing) per host now."""

    hosts: int
    busy: dict[str, int]


class HostGates:
    """One ``CapacityLimiter(concurrency)`` per host name, created on first use."""

    def __init__(self, concurrency: int = 2) -> None:
        self.concurrency = concurrency
        self._limiters: dict[str, trio.CapacityLimiter] = {}

    def limiter(self, host: str) -> trio.CapacityLimiter:
        """The limiter of ``host`` (lower-cased)."""
        key = host.lower()
        lim = self._limiters.get(key)
        if lim is None:
            lim = self._limiters[key] = trio.CapacityLimiter(self.concurrency)
        return lim

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        """Hold one of ``host``'s slots for the ``async with`` body."""
        async with self.limiter(host):
            yield

    def statistics(self) -> HostGateStatistics:
        """Snapshot of the gates."""
        busy = {h: int(lim.borrowed_tokens) for h, lim in self._limiters.items()}
        return HostGateStatistics(len(self._limiters), {h: n for h, n in busy.items() if n})
