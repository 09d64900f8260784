"""The coordinator (sans-IO): which queued job runs next, under every lane's politeness.

Each domain has a lane (concurrency limit + token bucket, :mod:`hathd.engine.lanes`); all jobs
also share the global lane (the worker pool's size + an optional global bucket). A job is
dispatched only when both of its lanes admit it; a busy or empty lane never blocks another
domain. Among admissible jobs the order is priority descending, then position ascending
(SABnzbd/NZBGet integer priority with aria2 positions; docs/engine.md).

Data structures: one heap of queued jobs per lane, plus a heap of *ready lane heads*; lanes
that cannot admit are parked until a job of theirs finishes (concurrency) or a timer fires
(token refill, rate-limit block). Entries are removed lazily. Dispatch is O(log n).

Pauses: the whole queue can be paused for several independent reasons (``"user"``, and the
daemon's own such as ``"disk"`` or ``"shutdown"``); resuming one reason leaves the others. While
the queue is paused *only* by the user (:data:`FORCE_BYPASSES`), jobs with priority >=
:data:`FORCE_PRIORITY` still run (NZBGet's force level), obeying politeness; any other reason
(shutdown, disk full) stops every job from starting.

Time is passed in by the caller as ``now`` (seconds, monotonic); nothing here does I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

import attrs

from hathd.engine.lanes import INFINITY, LaneSettings, LaneTable
from hathd.tokenbucket import TokenBucket

FORCE_PRIORITY = 900
"""Jobs at or above this priority run while the user paused the queue (NZBGet's force = 900)."""

FORCE_BYPASSES = frozenset({"user"})
"""Pause reasons that force-priority jobs ignore; any other reason (``"shutdown"``,
``"disk"``, …) holds every job."""

RATE_LIMIT_BACKOFF_MIN = 1.0
RATE_LIMIT_BACKOFF_MAX = 300.0
"""A rate-limited lane is blocked for max(Retry-After, backoff); the backoff doubles per
consecutive rate limit from 1 s up to 300 s (Scrapy's throttling design, §2.6)."""

Key = tuple[int, int, int]
"""Sort key of a queued job: (-priority, position, sequence)."""


@attrs.frozen
class Dispatch:
    """A job the coordinator has admitted: its id and domain."""

    id: str
    domain: str
    priority: int


class _Lane:
    __slots__ = (
        "advertised",
        "backoff",
        "blocked_until",
        "bucket",
        "domain",
        "heap",
        "running",
        "settings",
        "wake_at",
    )

    def __init__(self, domain: str, settings: LaneSettings, now: float) -> None:
        self.domain = domain
        self.settings = settings
        self.bucket = TokenBucket(settings.rate, settings.burst, now)
        self.running = 0
        self.heap: list[tuple[int, int, int, str]] = []
        self.blocked_until = 0.0
        self.backoff = RATE_LIMIT_BACKOFF_MIN
        self.wake_at: float | None = None
        self.advertised: tuple[int, int, int] | None = None

    def wait_time(self, now: float) -> float:
        if self.running >= self.settings.concurrency:
            return INFINITY
        if self.blocked_until > now:
            return self.blocked_until - now
        return self.bucket.wait_time(now)


@attrs.frozen
class LaneStatistics:
    """One lane: domain, jobs queued and running, limit, rate (jobs/s), blocked seconds left."""

    domain: str
    queued: int
    running: int
    concurrency: int
    rate: float
    blocked_for: float


@attrs.frozen
class CoordinatorStatistics:
    """Totals: jobs queued and running, lanes known, pause reasons of the queue."""

    queued: int
    running: int
    lanes: int
    paused: tuple[str, ...]


class Coordinator:
    """Per-domain lanes, the global lane, priority order and queue pauses.

    :param table: settings per domain pattern.
    :param global_concurrency: jobs running at once in total (the worker pool size).
    :param global_rate: jobs/s over all domains (0: unlimited), with ``global_burst``.
    :param now: the clock reading at creation (seconds).
    """

    def __init__(
        self,
        table: LaneTable,
        *,
        global_concurrency: int,
        global_rate: float = 0.0,
        global_burst: int = 1,
        now: float = 0.0,
    ) -> None:
        self.table = table
        self.global_concurrency = max(1, global_concurrency)
        self._global_bucket = TokenBucket(global_rate, global_burst, now)
        self._running = 0
        self._lanes: dict[str, _Lane] = {}
        self._queued: dict[str, tuple[Key, str]] = {}
        self._ready: list[tuple[int, int, int, str]] = []
        self._timers: list[tuple[float, str]] = []
        self._paused: set[str] = set()
        self._seq = 0

    # -- queue contents --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._queued)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._queued

    def _lane(self, domain: str, now: float) -> _Lane:
        lane = self._lanes.get(domain)
        if lane is None:
            lane = _Lane(domain, self.table.settings_for(domain), now)
            self._lanes[domain] = lane
        return lane

    def _head(self, lane: _Lane) -> tuple[int, int, int, str] | None:
        heap = lane.heap
        while heap:
            top = heap[0]
            item = self._queued.get(top[3])
            if item is not None and item[0] == top[:3] and item[1] == lane.domain:
                return top
            heapq.heappop(heap)
        return None

    def _push_head(self, lane: _Lane) -> None:
        # at most one live entry per lane in the ready heap: the one advertising its head
        head = self._head(lane)
        if head is not None and lane.advertised != head[:3]:
            lane.advertised = head[:3]
            heapq.heappush(self._ready, (head[0], head[1], head[2], lane.domain))

    def add(self, job_id: str, domain: str, priority: int, position: int, *, now: float) -> None:
        """Queue ``job_id`` (or re-key it if already queued)."""
        self._seq += 1
        key: Key = (-priority, position, self._seq)
        self._queued[job_id] = (key, domain)
        lane = self._lane(domain, now)
        heapq.heappush(lane.heap, (key[0], key[1], key[2], job_id))
        head = self._head(lane)
        if head is not None and head[3] == job_id:
            self._push_head(lane)

    def add_many(self, items: Iterable[tuple[str, str, int, int]], *, now: float) -> None:
        """Queue many ``(job_id, domain, priority, position)`` at once (start-up recovery)."""
        touched: set[str] = set()
        for job_id, domain, priority, position in items:
            self._seq += 1
            key: Key = (-priority, position, self._seq)
            self._queued[job_id] = (key, domain)
            self._lane(domain, now).heap.append((key[0], key[1], key[2], job_id))
            touched.add(domain)
        for domain in touched:
            lane = self._lanes[domain]
            heapq.heapify(lane.heap)
            self._push_head(lane)

    def remove(self, job_id: str) -> bool:
        """Take ``job_id`` out of the queue; False if it was not queued."""
        return self._queued.pop(job_id, None) is not None

    def ordered(self) -> list[str]:
        """Queued job ids in priority-then-position order (O(n log n); for display and moves)."""
        return [job_id for job_id, _ in sorted(self._queued.items(), key=lambda kv: kv[1][0])]

    # -- pauses and politeness changes -----------------------------------------------------

    def pause(self, reason: str) -> None:
        """Pause the queue for ``reason``; running jobs go on. While every reason is in
        :data:`FORCE_BYPASSES`, force-priority jobs still start; otherwise none does."""
        self._paused.add(reason)

    def resume(self, reason: str, *, now: float) -> None:
        """Lift the pause of ``reason`` only."""
        self._paused.discard(reason)
        if not self._paused:
            for lane in self._lanes.values():
                self._push_head(lane)

    @property
    def paused(self) -> frozenset[str]:
        """The reasons the queue is paused for (empty: running)."""
        return frozenset(self._paused)

    def set_lane(self, pattern: str, settings: LaneSettings, *, now: float) -> None:
        """Declare the settings of ``pattern``; existing lanes pick them up (see
        :meth:`set_table`)."""
        self.table.set(pattern, settings)
        self._apply_table(now)

    def set_table(self, table: LaneTable, *, now: float) -> None:
        """Replace every lane setting at once (a configuration reload).

        Known lanes keep their running count, queued jobs, rate-limit block and backoff; a lane
        whose rate or burst changed gets a new (full) bucket. A lane that may now admit more
        (e.g. a raised concurrency) is offered to :meth:`next` again.
        """
        self.table = table
        self._apply_table(now)

    def _apply_table(self, now: float) -> None:
        for domain, lane in self._lanes.items():
            new = self.table.settings_for(domain)
            if new == lane.settings:
                continue
            if (new.rate, new.burst) != (lane.settings.rate, lane.settings.burst):
                lane.bucket = TokenBucket(new.rate, new.burst, now)
            lane.settings = new
            self._push_head(lane)

    def set_global(self, *, concurrency: int, rate: float, burst: int, now: float) -> None:
        """Change the global lane: jobs at once in total, and its bucket (jobs/s, burst).

        A bucket whose settings did not change keeps its tokens.
        """
        self.global_concurrency = max(1, concurrency)
        bucket = self._global_bucket
        if (float(rate), float(max(1, burst))) != (bucket.rate, bucket.burst):
            self._global_bucket = TokenBucket(rate, burst, now)

    def rate_limited(self, domain: str, retry_after: float | None, *, now: float) -> float:
        """The remote of ``domain`` asked us to slow down: block the lane for
        ``max(retry_after, backoff)`` seconds (backoff doubling 1 s → 300 s); returns the block."""
        lane = self._lane(domain, now)
        block = max(retry_after or 0.0, lane.backoff)
        lane.backoff = min(lane.backoff * 2, RATE_LIMIT_BACKOFF_MAX)
        lane.blocked_until = max(lane.blocked_until, now + block)
        self._schedule(lane, lane.blocked_until)
        return block

    def succeeded(self, domain: str) -> None:
        """A job of ``domain`` succeeded: reset the lane's rate-limit backoff."""
        lane = self._lanes.get(domain)
        if lane is not None:
            lane.backoff = RATE_LIMIT_BACKOFF_MIN

    # -- dispatch --------------------------------------------------------------------------

    def _schedule(self, lane: _Lane, when: float) -> None:
        if lane.wake_at is None or when < lane.wake_at:
            lane.wake_at = when
            heapq.heappush(self._timers, (when, lane.domain))

    def _fire_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, domain = heapq.heappop(timers)
            lane = self._lanes.get(domain)
            if lane is None:
                continue
            if lane.wake_at == when:
                lane.wake_at = None
            self._push_head(lane)

    def next(self, now: float) -> Dispatch | None:
        """Admit the best eligible job and take its slots and tokens; ``None`` when none is."""
        self._fire_timers(now)
        if self._running >= self.global_concurrency:
            return None
        if self._global_bucket.wait_time(now) > 0:
            return None
        ready = self._ready
        while ready:
            neg_prio, position, seq, domain = ready[0]
            lane = self._lanes.get(domain)
            if lane is None or lane.advertised != (neg_prio, position, seq):
                heapq.heappop(ready)  # an old entry: the lane advertises another one
                continue
            head = self._head(lane)
            if head is None or head[:3] != (neg_prio, position, seq):
                # the advertised job was removed or re-keyed: advertise the real head
                heapq.heappop(ready)
                lane.advertised = None
                self._push_head(lane)
                continue
            if self._paused and (-neg_prio < FORCE_PRIORITY or not self._paused <= FORCE_BYPASSES):
                return None
            heapq.heappop(ready)
            lane.advertised = None
            wait = lane.wait_time(now)
            if wait > 0:
                if wait != INFINITY:
                    self._schedule(lane, now + wait)
                continue
            heapq.heappop(lane.heap)
            job_id = head[3]
            del self._queued[job_id]
            lane.running += 1
            lane.bucket.take(now)
            self._running += 1
            self._global_bucket.take(now)
            self._push_head(lane)
            return Dispatch(job_id, domain, -neg_prio)
        return None

    def release(self, domain: str, *, now: float) -> None:
        """A job of ``domain`` admitted by :meth:`next` has stopped running."""
        lane = self._lanes.get(domain)
        self._running = max(0, self._running - 1)
        if lane is None:
            return
        lane.running = max(0, lane.running - 1)
        self._push_head(lane)
        idle = lane.running == 0 and not lane.heap and lane.wake_at is None
        if idle and lane.blocked_until <= now and lane.bucket.is_full(now):
            del self._lanes[domain]

    def next_wakeup(self, now: float) -> float | None:
        """The earliest time (same clock as ``now``) at which :meth:`next` may admit a job
        that it cannot admit now, or ``None`` when only a release or an add can change that."""
        if not self._queued:
            return None
        candidates: list[float] = []
        if self._timers:
            candidates.append(self._timers[0][0])
        if self._running < self.global_concurrency:
            wait = self._global_bucket.wait_time(now)
            if wait > 0:
                candidates.append(now + wait)
        return min(candidates) if candidates else None

    # -- introspection ---------------------------------------------------------------------

    @property
    def running(self) -> int:
        """Jobs admitted and not yet released."""
        return self._running

    def lane_running(self, domain: str) -> int:
        """Jobs of ``domain`` running now."""
        lane = self._lanes.get(domain)
        return lane.running if lane else 0

    def lanes(self, now: float, *, limit: int = 50) -> list[LaneStatistics]:
        """The busiest lanes (running, then queued), at most ``limit``."""
        counts: dict[str, int] = {}
        for _key, domain in self._queued.values():
            counts[domain] = counts.get(domain, 0) + 1
        stats = [
            LaneStatistics(
                domain=lane.domain,
                queued=counts.get(lane.domain, 0),
                running=lane.running,
                concurrency=lane.settings.concurrency,
                rate=lane.settings.rate,
                blocked_for=max(0.0, lane.blocked_until - now),
            )
            for lane in self._lanes.values()
        ]
        stats.sort(key=lambda s: (-s.running, -s.queued, s.domain))
        return stats[:limit]

    def statistics(self) -> CoordinatorStatistics:
        """Totals for the status API."""
        return CoordinatorStatistics(
            queued=len(self._queued),
            running=self._running,
            lanes=len(self._lanes),
            paused=tuple(sorted(self._paused)),
        )
