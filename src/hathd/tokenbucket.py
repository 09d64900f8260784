"""The token bucket (sans-IO): the one rate limiter behind the engine's politeness lanes, the
image server's upload throttle and the recipes' request limits.

``rate`` tokens are added per second, continuously, up to ``burst`` stored; the bucket starts
full. Nothing here reads a clock: every method takes ``now`` in seconds from the caller's
monotonic clock. A token is whatever the caller counts (a job, a request, a byte). Over any
interval of length ``T`` a bucket admits at most ``rate * T + burst`` tokens. A ``rate`` of 0
(or less) means unlimited: every call admits at once.

Two ways to use it:

- ask first, then spend (the engine's dispatcher): :meth:`TokenBucket.wait_time`, then
  :meth:`TokenBucket.take` once it is 0;
- spend now, pay later (request and byte throttles): :meth:`TokenBucket.reserve` takes the tokens
  at once, letting the bucket go into debt, and returns how long the caller must wait before
  using them (the shape of Go's ``golang.org/x/time/rate`` ``Limiter.ReserveN``).
"""

from __future__ import annotations

_EPS = 1e-9


class TokenBucket:
    """``rate`` tokens/s (``<= 0``: unlimited), at most ``burst`` stored (at least 1); full at
    ``now`` (seconds)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self.tokens = self.burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_time(self, now: float, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens are available (0.0 when they are now); takes nothing."""
        if self.rate <= 0:
            return 0.0
        self._refill(now)
        if self.tokens >= n - _EPS:
            return 0.0
        return (n - self.tokens) / self.rate

    def take(self, now: float, n: float = 1.0) -> None:
        """Spend ``n`` tokens (call when :meth:`wait_time` is 0; the level never goes below 0)."""
        if self.rate <= 0:
            return
        self._refill(now)
        self.tokens = max(0.0, self.tokens - n)

    def reserve(self, now: float, n: float = 1.0) -> float:
        """Spend ``n`` tokens now, going into debt if needed; return the seconds (``>= 0``) the
        caller must wait before using them. Later reservations queue behind the debt."""
        if self.rate <= 0:
            return 0.0
        self._refill(now)
        self.tokens -= n
        lag = max(0.0, self.stamp - now)
        return lag if self.tokens >= 0 else lag + (-self.tokens) / self.rate

    def is_full(self, now: float) -> bool:
        """True when the bucket holds ``burst`` tokens (forgetting it then loses no state)."""
        if self.rate <= 0:
            return True
        self._refill(now)
        return self.tokens >= self.burst - _EPS

    def reconfigure(self, rate: float, burst: float, now: float) -> None:
        """Change ``rate`` and ``burst`` at ``now``: tokens earned so far are kept (up to the new
        burst); a bucket that was unlimited starts full."""
        was_unlimited = self.rate <= 0
        self._refill(now)
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self.tokens = self.burst if was_unlimited else min(self.tokens, self.burst)
        self.stamp = max(self.stamp, now)
