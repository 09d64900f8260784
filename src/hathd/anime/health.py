"""Per-hoster health: success rate, latency, and a cool-down that sets a failing hoster aside.

Sans-IO: every method takes ``now`` (seconds, any monotonic origin) from the caller, or reads
the ``clock`` given at construction.

Rules: the last :data:`WINDOW` outcomes of a hoster give its success rate. A hoster goes into
cool-down after ``failure_threshold`` consecutive failures, or when at least
``failure_threshold`` recent attempts succeeded less than ``min_success_rate`` of the time.
The first cool-down lasts ``cooldown`` seconds, each further one without a success in between
twice as long, up to ``max_cooldown``. A success ends the streak (the next cool-down starts
again at ``cooldown``). Latency is an exponentially weighted mean (weight
:data:`LATENCY_WEIGHT`) of the seconds from the provider's redirect to the first media byte.

Persistence: :meth:`HosterHealth.export` gives a hoster's record as JSON-ready data, with the
cool-down as a wall-clock deadline (seconds since the epoch), and :meth:`HosterHealth.restore`
takes it back after a restart (the cool-down then lasts what was left of it). The anime service
keeps them in the store (``anime_hoster_health``) and writes a hoster's record after each
change (``on_change``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

WINDOW = 20
"""Outcomes kept per hoster for its success rate."""
LATENCY_WEIGHT = 0.3
"""Weight of the newest sample in the latency mean."""


@attrs.frozen
class HosterStatus:
    """A hoster's health now: attempts and successes in the window, ``success_rate`` (0..1,
    ``None`` before any attempt), ``latency`` (s, ``None`` before a success), seconds of
    cool-down left (0: available), the last failure's reason."""

    hoster: str
    attempts: int
    successes: int
    success_rate: float | None
    latency: float | None
    cooldown_left: float
    consecutive_failures: int
    last_error: str | None


@attrs.define
class _Record:
    outcomes: deque[bool] = attrs.field(factory=lambda: deque(maxlen=WINDOW))
    latency: float | None = None
    consecutive_failures: int = 0
    cooldowns: int = 0
    until: float = 0.0
    last_error: str | None = None


class HosterHealth:
    """Health of every hoster seen (see the module docstring for the rules).

    :param cooldown: the first cool-down, seconds.
    :param max_cooldown: the longest cool-down, seconds.
    :param failure_threshold: consecutive failures that start a cool-down (>= 1).
    :param min_success_rate: below this rate over the window a hoster cools down (0..1).
    :param clock: the time source used when a method gets no ``now``.
    """

    def __init__(
        self,
        *,
        cooldown: float = 600.0,
        max_cooldown: float = 6 * 3600.0,
        failure_threshold: int = 3,
        min_success_rate: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        if cooldown < 0 or max_cooldown < cooldown or failure_threshold < 1:
            raise ValueError("health: 0 <= cooldown <= max_cooldown and failure_threshold >= 1")
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.failure_threshold = failure_threshold
        self.min_success_rate = min_success_rate
        self._clock = clock
        self._wall = wall
        self._records: dict[str, _Record] = {}
        self.on_change = on_change
        """Called with the hoster's name after each recorded outcome (e.g. to persist it)."""

    def _changed(self, hoster: str) -> None:
        if self.on_change is not None:
            self.on_change(hoster)

    def _record(self, hoster: str) -> _Record:
        return self._records.setdefault(hoster, _Record())

    def available(self, hoster: str, now: float | None = None) -> bool:
        """True unless ``hoster`` is in cool-down."""
        rec = self._records.get(hoster)
        return rec is None or rec.until <= (self._clock() if now is None else now)

    def cooldown_left(self, hoster: str, now: float | None = None) -> float:
        """Seconds of cool-down ``hoster`` has left (0.0 when available)."""
        rec = self._records.get(hoster)
        if rec is None:
            return 0.0
        return max(0.0, rec.until - (self._clock() if now is None else now))

    def record_success(self, hoster: str, latency: float, now: float | None = None) -> None:
        """A download from ``hoster`` succeeded; ``latency`` in seconds."""
        rec = self._record(hoster)
        rec.outcomes.append(True)
        rec.consecutive_failures = 0
        rec.cooldowns = 0
        rec.until = 0.0
        latency = max(0.0, latency)
        rec.latency = (
            latency
            if rec.latency is None
            else (1 - LATENCY_WEIGHT) * rec.latency + LATENCY_WEIGHT * latency
        )
        self._changed(hoster)

    def record_failure(self, hoster: str, reason: str, now: float | None = None) -> bool:
        """A try of ``hoster`` failed for ``reason``; returns True when it starts a cool-down."""
        at = self._clock() if now is None else now
        rec = self._record(hoster)
        rec.outcomes.append(False)
        rec.consecutive_failures += 1
        rec.last_error = reason
        attempts = len(rec.outcomes)
        rate = sum(rec.outcomes) / attempts
        if rec.consecutive_failures >= self.failure_threshold or (
            attempts >= self.failure_threshold and rate < self.min_success_rate
        ):
            length = min(self.max_cooldown, self.cooldown * (2**rec.cooldowns))
            rec.cooldowns += 1
            rec.until = at + length
            self._changed(hoster)
            return True
        self._changed(hoster)
        return False

    def status(self, hoster: str, now: float | None = None) -> HosterStatus:
        """The :class:`HosterStatus` of ``hoster`` (empty when never tried)."""
        rec = self._records.get(hoster) or _Record()
        attempts = len(rec.outcomes)
        successes = sum(rec.outcomes)
        return HosterStatus(
            hoster=hoster,
            attempts=attempts,
            successes=successes,
            success_rate=successes / attempts if attempts else None,
            latency=rec.latency,
            cooldown_left=self.cooldown_left(hoster, now),
            consecutive_failures=rec.consecutive_failures,
            last_error=rec.last_error,
        )

    def snapshot(self, now: float | None = None) -> list[HosterStatus]:
        """Every hoster seen, by name."""
        return [self.status(h, now) for h in sorted(self._records)]

    def export(
        self, hoster: str, now: float | None = None, wall: float | None = None
    ) -> dict[str, Any]:
        """``hoster``'s record as JSON-ready data: ``{"outcomes": "10…" (oldest first, 1 =
        success), "latency" (s or null), "consecutive_failures", "cooldowns",
        "cooldown_until" (seconds since the epoch, null when available), "last_error"}``."""
        rec = self._records.get(hoster) or _Record()
        left = self.cooldown_left(hoster, now)
        at = self._wall() if wall is None else wall
        return {
            "outcomes": "".join("1" if ok else "0" for ok in rec.outcomes),
            "latency": rec.latency,
            "consecutive_failures": rec.consecutive_failures,
            "cooldowns": rec.cooldowns,
            "cooldown_until": at + left if left > 0 else None,
            "last_error": rec.last_error,
        }

    def restore(
        self,
        hoster: str,
        data: dict[str, Any],
        now: float | None = None,
        wall: float | None = None,
    ) -> None:
        """Take back a record made by :meth:`export` (a cool-down whose deadline has passed
        is over; one longer than ``max_cooldown`` from now is cut to it).

        :raises ValueError: ``data`` is not such a record (nothing changed).
        """
        try:
            outcomes = data["outcomes"]
            latency = data["latency"]
            failures = data["consecutive_failures"]
            cooldowns = data["cooldowns"]
            until = data["cooldown_until"]
            last_error = data["last_error"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"health record of {hoster!r}: missing {exc}") from None
        if not isinstance(outcomes, str) or outcomes.strip("01"):
            raise ValueError(f"health record of {hoster!r}: bad outcomes")
        numbers = (latency, until)
        if any(v is not None and not _finite(v) for v in numbers):
            raise ValueError(f"health record of {hoster!r}: bad latency or cool-down")
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (failures, cooldowns)
        ):
            raise ValueError(f"health record of {hoster!r}: bad counters")
        if last_error is not None and not isinstance(last_error, str):
            raise ValueError(f"health record of {hoster!r}: bad last error")
        at = self._clock() if now is None else now
        at_wall = self._wall() if wall is None else wall
        rec = _Record()
        rec.outcomes.extend(c == "1" for c in outcomes[-WINDOW:])
        rec.latency = None if latency is None else max(0.0, float(latency))
        rec.consecutive_failures = failures
        rec.cooldowns = cooldowns
        left = 0.0 if until is None else min(self.max_cooldown, float(until) - at_wall)
        rec.until = at + left if left > 0 else 0.0
        rec.last_error = last_error
        self._records[hoster] = rec

    def hosters(self) -> list[str]:
        """Every hoster seen, by name."""
        return sorted(self._records)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
