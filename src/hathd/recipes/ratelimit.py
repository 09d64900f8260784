"""Request-rate limits: a token bucket per service plus one global bucket.

The bucket is :class:`hathd.tokenbucket.TokenBucket`, used through ``reserve`` (the shape of
Go's ``rate.Limiter.Reserve``, which ConniesUploader uses with 2 req/s burst 5 per host and
10 req/s burst 20 globally, its ``uploader.go``).
:class:`Limiter` is the thin Trio shell that sleeps for the longest of several buckets' waits.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import trio

from hathd.tokenbucket import TokenBucket


@attrs.frozen
class LimiterStatistics:
    """Requests admitted by a limiter and the total time they waited (seconds)."""

    requests: int
    waited: float


class Limiter:
    """Admit a request only when every one of ``buckets`` allows it (waits on the Trio clock)."""

    def __init__(self, buckets: Sequence[TokenBucket]) -> None:
        self.buckets = list(buckets)
        self.requests = 0
        self.waited = 0.0

    async def acquire(self) -> None:
        """Wait until the request may go."""
        now = trio.current_time()
        wait = max((b.reserve(now) for b in self.buckets), default=0.0)
        self.requests += 1
        self.waited += wait
        if wait > 0:
            await trio.sleep(wait)

    def statistics(self) -> LimiterStatistics:
        """Counters of this limiter."""
        return LimiterStatistics(self.requests, round(self.waited, 3))


def new_bucket(rate: float, burst: int) -> TokenBucket:
    """A full bucket stamped with the current Trio time (call inside ``trio.run``)."""
    return TokenBucket(rate, burst, trio.current_time())
