"""Admission and rate limits of the image server (sans-IO; times are seconds from a caller's
clock).

* :class:`FloodControl` — per IP ``count = max(0, count − whole seconds since last) + 1``; over
  10 blocks the IP for 60 s; entries idle for 60 s are pruned (J162 ``FloodControlEntry``;
  docs/hath-protocol.md §7).
* :func:`is_local` — "local" sources exempt from caps, flood control and the throttle:
  localhost, 10/8, 172.16/12, 192.168/16, 169.254/16, ::1, fc00::/7 (J162 ``HTTPServer.run``).
* :class:`UploadThrottle` — the global upload throttle of ``throttle_bytes`` bytes/s. The official
  monitor gates 1460-byte writes in 20 ms ticks (J162 ``HTTPBandwidthMonitor``); a token bucket
  with a 50 ms burst gives the same long-run rate with far fewer wake-ups (§9).
* :class:`OverloadNotice` — notify ``overload`` when open connections exceed 0.8 × the cap, at
  most once per 30 s (J162 ``notifyOverload``).
"""

from __future__ import annotations

import ipaddress

import attrs

from hathd.tokenbucket import TokenBucket

FLOOD_LIMIT = 10
FLOOD_BLOCK = 60.0
FLOOD_IDLE = 60.0
OVERLOAD_EVERY = 30.0


@attrs.define
class _FloodEntry:
    count: float = 0.0
    last: float = 0.0
    blocked_until: float = 0.0


class FloodControl:
    """Per-IP connection-rate limiter; see the module docstring."""

    def __init__(self, limit: int = FLOOD_LIMIT, block: float = FLOOD_BLOCK) -> None:
        self.limit = limit
        self.block = block
        self._entries: dict[str, _FloodEntry] = {}
        self.blocked_total = 0

    def admit(self, ip: str, now: float) -> bool:
        """Count one connection from ``ip`` at ``now``; ``False`` if the IP is (now) blocked."""
        e = self._entries.get(ip)
        if e is None:
            e = self._entries[ip] = _FloodEntry(last=now)
        if now < e.blocked_until:
            self.blocked_total += 1
            return False
        e.count = max(0.0, e.count - int(now - e.last)) + 1
        e.last = now
        if e.count > self.limit:
            e.blocked_until = now + self.block
            self.blocked_total += 1
            return False
        return True

    def prune(self, now: float) -> None:
        """Forget IPs idle for more than 60 s and not blocked."""
        for ip in [
            ip
            for ip, e in self._entries.items()
            if now - e.last > FLOOD_IDLE and now >= e.blocked_until
        ]:
            del self._entries[ip]

    def __len__(self) -> int:
        return len(self._entries)


_PRIVATE = [
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
    )
]


def is_local(ip: str, own_host: str | None = None) -> bool:
    """Whether ``ip`` is a local source (our own public ``host`` counts too)."""
    if own_host and ip == own_host:
        return True
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in _PRIVATE)


class UploadThrottle:
    """The byte-rate limiter of the image server over a :class:`~hathd.tokenbucket.TokenBucket`
    holding ``burst_seconds`` of ``rate``: ``delay(n, now)`` books ``n`` bytes and returns how
    long (seconds) the caller must wait before sending them. ``rate`` in bytes/s; 0 = unlimited.
    ``sent`` counts every byte booked."""

    def __init__(self, rate: int, burst_seconds: float = 0.05) -> None:
        self.burst_seconds = burst_seconds
        self._bucket: TokenBucket | None = None
        self._rate = rate
        self.sent = 0

    @property
    def rate(self) -> int:
        """Bytes per second (0: unlimited)."""
        return self._rate

    def set_rate(self, rate: int) -> None:
        """Change the rate (applies from the next :meth:`delay`)."""
        self._rate = rate

    def delay(self, n: int, now: float) -> float:
        """Book ``n`` bytes at ``now`` (seconds); return the wait before sending them."""
        self.sent += n
        burst = self._rate * self.burst_seconds
        if self._bucket is None:
            self._bucket = TokenBucket(self._rate, burst, now)
        elif self._bucket.rate != self._rate:
            self._bucket.reconfigure(self._rate, burst, now)
        return self._bucket.reserve(now, n)


class OverloadNotice:
    """Decides when to send ``overload``: over 0.8 × ``max_conn`` open, ≤ once per 30 s."""

    def __init__(self) -> None:
        self._last: float | None = None
        self.sent = 0

    def should_notify(self, open_conns: int, max_conn: int, now: float) -> bool:
        if open_conns <= 0.8 * max_conn:
            return False
        if self._last is not None and now - self._last < OVERLOAD_EVERY:
            return False
        self._last = now
        self.sent += 1
        return True


class FlightFailed(Exception):
    """The upstream download of a proxied miss failed after the response had begun; the
    server aborts the connection (raised by :mod:`hathd.hath.proxy`; it lives here so that
    the image server can catch it without importing the proxy and its HTTP client)."""
