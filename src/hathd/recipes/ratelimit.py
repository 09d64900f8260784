"""Request-rate limits: a token bucket per service plus one global bucket.

The bucket is sans-IO: :meth:`TokenBucket.reserve` takes the current time (seconds, any
monotonic clock) and returns how long the caller must wait before sending, reserving the
token at once (the shape of Go's ``rate.Limiter.Reserve``, which ConniesUploader uses with
2 req/s burst 5 per host and 10 req/s burst 20 globally, uploader.go:162–251).
:class:`Limiter` is the thin Trio shell that sleeps for the longest of several buckets' waits.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import trio


class TokenBucket:
    """``rate`` tokens per second (0: unlimited), at most ``burst`` stored."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._stamp = now
        self.granted = 0

    def reserve(self, now: float) -> float:
        """Take one token; return the wait (seconds, ≥ 0) until it may be used."""
        self.granted += 1
        if self.rate <= 0:
            return 0.0
        if now > self._stamp:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return max(0.0, self._stamp - now)
        return (self._stamp - now) + (-self._tokens) / self.rate


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
