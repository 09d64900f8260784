"""Property tests of the sans-IO coordinator and token bucket on a fake clock (no I/O)."""

from __future__ import annotations

import heapq
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from hathd.engine.coordinator import FORCE_PRIORITY, Coordinator
from hathd.engine.lanes import LaneSettings, LaneTable
from hathd.tokenbucket import TokenBucket

EPS = 1e-6


@given(
    rate=st.floats(0.1, 50),
    burst=st.integers(1, 10),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_token_bucket_admits_at_most_rate_times_time_plus_burst(
    rate: float, burst: int, gaps: list[float]
) -> None:
    bucket = TokenBucket(rate, burst, 0.0)
    now = 0.0
    admitted: list[float] = []
    for gap in gaps:
        now += gap
        if bucket.wait_time(now) == 0:
            bucket.take(now)
            admitted.append(now)
    for i in range(len(admitted)):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= rate * (admitted[j] - admitted[i]) + burst + EPS


@given(rate=st.floats(0.1, 20), burst=st.integers(1, 5))
def test_token_bucket_wait_time_is_exact(rate: float, burst: int) -> None:
    bucket = TokenBucket(rate, burst, 0.0)
    for _ in range(burst):
        assert bucket.wait_time(0.0) == 0
        bucket.take(0.0)
    wait = bucket.wait_time(0.0)
    assert abs(wait - 1 / rate) < 1e-9
    assert bucket.wait_time(wait) == 0


def test_lane_table_prefers_exact_then_most_specific_pattern() -> None:
    table = LaneTable()
    table.set("*", LaneSettings(2))
    table.set("*.example.org", LaneSettings(3))
    table.set("img.example.org", LaneSettings(4))
    table.set("*img*.example.org", LaneSettings(5))
    assert table.settings_for("other.net").concurrency == 2
    assert table.settings_for("www.example.org").concurrency == 3
    assert table.settings_for("IMG.example.org").concurrency == 4
    assert table.settings_for("cdnimg2.example.org").concurrency == 5


lane_settings = st.builds(
    LaneSettings,
    concurrency=st.integers(1, 3),
    rate=st.one_of(st.just(0.0), st.floats(0.2, 5)),
    burst=st.integers(1, 3),
)
jobs_strategy = st.lists(
    st.tuples(st.integers(0, 5), st.integers(-2, 2)),  # (domain index, priority)
    min_size=1,
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(
    lanes=st.lists(lane_settings, min_size=6, max_size=6),
    jobs=jobs_strategy,
    global_concurrency=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_simulated_dispatch_respects_every_lane_and_order(
    lanes: list[LaneSettings],
    jobs: list[tuple[int, int]],
    global_concurrency: int,
    seed: int,
) -> None:
    rng = random.Random(seed)
    table = LaneTable(LaneSettings(1))
    for i, settings_ in enumerate(lanes):
        table.set(f"d{i}", settings_)
    coord = Coordinator(table, global_concurrency=global_concurrency, now=0.0)
    now = 0.0
    queued: dict[str, tuple[int, int, int]] = {}  # id → (domain idx, priority, position)
    for n, (d, prio) in enumerate(jobs):
        job_id = f"j{n}"
        coord.add(job_id, f"d{d}", prio, n, now=now)
        queued[job_id] = (d, prio, n)
    running: dict[int, int] = {}
    finishing: list[tuple[float, str, int]] = []
    admitted: dict[int, list[float]] = {}
    order_in_lane: dict[int, list[tuple[int, int]]] = {}
    steps = 0
    while queued or finishing:
        steps += 1
        assert steps < 100_000, "simulation does not progress"
        while (picked := coord.next(now)) is not None:
            d, prio, pos = queued.pop(picked.id)
            assert picked.domain == f"d{d}"
            # lane and global limits
            running[d] = running.get(d, 0) + 1
            assert running[d] <= lanes[d].concurrency
            assert sum(running.values()) <= global_concurrency
            # order: nothing better is waiting in a lane that could have taken it
            for other_d, other_prio, other_pos in queued.values():
                if (-other_prio, other_pos) < (-prio, pos):
                    lane = lanes[other_d]
                    blocked = running.get(other_d, 0) >= lane.concurrency or lane.rate > 0
                    assert blocked, (other_d, other_prio, other_pos, d, prio, pos)
            admitted.setdefault(d, []).append(now)
            order_in_lane.setdefault(d, []).append((-prio, pos))
            heapq.heappush(finishing, (now + rng.choice([0.0, 0.1, 0.5, 2.0]), picked.id, d))
        # no head-of-line blocking: an idle, non-full lane with work has a wake-up soon
        if sum(running.values()) < global_concurrency:
            for d in {v[0] for v in queued.values()}:
                if running.get(d, 0) < lanes[d].concurrency:
                    wake = coord.next_wakeup(now)
                    assert lanes[d].rate > 0, f"lane d{d} could run but did not"
                    assert wake is not None
                    assert wake <= now + 1 / lanes[d].rate + EPS
        wake = coord.next_wakeup(now)
        nxt = finishing[0][0] if finishing else None
        candidates = [t for t in (wake, nxt) if t is not None]
        assert candidates, "work left but nothing will ever wake the coordinator"
        now = max(now, min(candidates))
        while finishing and finishing[0][0] <= now:
            _t, _job, d = heapq.heappop(finishing)
            running[d] -= 1
            coord.release(f"d{d}", now=now)
    # nobody starved: every job ran
    assert sum(len(v) for v in admitted.values()) == len(jobs)
    for d, times in admitted.items():
        # within a lane, priority then position
        assert order_in_lane[d] == sorted(order_in_lane[d])
        rate, burst = lanes[d].rate, lanes[d].burst
        if rate > 0:
            for i in range(len(times)):
                for j in range(i, len(times)):
                    assert j - i + 1 <= rate * (times[j] - times[i]) + burst + EPS


@settings(max_examples=100, deadline=None)
@given(jobs=jobs_strategy)
def test_unlimited_lanes_dispatch_in_exact_priority_then_position_order(
    jobs: list[tuple[int, int]],
) -> None:
    table = LaneTable(LaneSettings(concurrency=1000))
    coord = Coordinator(table, global_concurrency=10_000)
    for n, (d, prio) in enumerate(jobs):
        coord.add(f"j{n}", f"d{d}", prio, n, now=0.0)
    order = []
    while (picked := coord.next(0.0)) is not None:
        order.append(int(picked.id[1:]))
    expected = sorted(range(len(jobs)), key=lambda n: (-jobs[n][1], n))
    assert order == expected


@settings(max_examples=100, deadline=None)
@given(jobs=jobs_strategy, removed=st.sets(st.integers(0, 79)))
def test_removed_and_rekeyed_jobs(jobs: list[tuple[int, int]], removed: set[int]) -> None:
    table = LaneTable(LaneSettings(concurrency=1000))
    coord = Coordinator(table, global_concurrency=10_000)
    for n, (d, prio) in enumerate(jobs):
        coord.add(f"j{n}", f"d{d}", prio, n, now=0.0)
    for n in removed:
        coord.remove(f"j{n}")
    # re-key the last job to the front of its priority band
    last = len(jobs) - 1
    if last not in removed:
        coord.add(f"j{last}", f"d{jobs[last][0]}", jobs[last][1], -1, now=0.0)
    order = []
    while (picked := coord.next(0.0)) is not None:
        order.append(int(picked.id[1:]))
    kept = [n for n in range(len(jobs)) if n not in removed]
    expected = sorted(kept, key=lambda n: (-jobs[n][1], -1 if n == last else n))
    assert order == expected
    assert len(coord) == 0


@given(
    prios=st.lists(st.sampled_from([0, 5, FORCE_PRIORITY, FORCE_PRIORITY + 1]), max_size=40),
    daemon_reason=st.sampled_from(["disk", "shutdown"]),
)
def test_paused_queue_runs_only_force_jobs_and_only_under_the_users_pause(
    prios: list[int], daemon_reason: str
) -> None:
    table = LaneTable(LaneSettings(concurrency=1000))
    coord = Coordinator(table, global_concurrency=10_000)
    coord.pause("user")
    coord.pause(daemon_reason)
    for n, prio in enumerate(prios):
        coord.add(f"j{n}", f"d{n % 3}", prio, n, now=0.0)
    # a daemon's pause (disk full, shutdown) holds even force jobs
    assert coord.next(0.0) is None
    coord.resume(daemon_reason, now=0.0)
    # the user's pause alone: only force jobs, best first
    ran = []
    while (picked := coord.next(0.0)) is not None:
        ran.append(picked.priority)
    assert ran == sorted((p for p in prios if p >= FORCE_PRIORITY), reverse=True)
    coord.pause(daemon_reason)
    coord.resume("user", now=0.0)
    assert coord.next(0.0) is None
    coord.resume(daemon_reason, now=0.0)
    rest = []
    while (picked := coord.next(0.0)) is not None:
        rest.append(picked.priority)
    assert len(ran) + len(rest) == len(prios)


def test_set_table_keeps_running_counts_and_admits_up_to_the_new_limit() -> None:
    table = LaneTable(LaneSettings(concurrency=1))
    coord = Coordinator(table, global_concurrency=100)
    for n in range(6):
        coord.add(f"a{n}", "a.org", 0, n, now=0.0)
    assert coord.next(0.0) is not None
    assert coord.next(0.0) is None  # concurrency 1, one running
    raised = LaneTable(LaneSettings(concurrency=1))
    raised.set("a.org", LaneSettings(concurrency=3))
    coord.set_table(raised, now=0.0)
    assert [p.id for p in iter(lambda: coord.next(0.0), None)] == ["a1", "a2"]
    assert coord.lane_running("a.org") == 3
    coord.set_table(LaneTable(LaneSettings(concurrency=2)), now=0.0)
    coord.release("a.org", now=0.0)
    assert coord.next(0.0) is None  # 2 still running: at the new limit
    coord.release("a.org", now=0.0)
    picked = coord.next(0.0)
    assert picked is not None
    assert picked.id == "a3"
    coord.set_global(concurrency=2, rate=0.0, burst=1, now=0.0)
    coord.set_table(LaneTable(LaneSettings(concurrency=10)), now=0.0)
    assert coord.next(0.0) is None  # the global lane: 2 running, limit 2


def test_rate_limited_lane_blocks_then_backs_off() -> None:
    table = LaneTable(LaneSettings(concurrency=5))
    coord = Coordinator(table, global_concurrency=10)
    for n in range(3):
        coord.add(f"a{n}", "a", 0, n, now=0.0)
    coord.add("b0", "b", 0, 10, now=0.0)
    first = coord.next(0.0)
    assert first is not None
    assert first.id == "a0"
    coord.release("a", now=0.0)
    assert coord.rate_limited("a", 5.0, now=0.0) == 5.0
    picked = coord.next(0.0)
    assert picked is not None
    assert picked.id == "b0"  # the blocked lane does not hold others back
    assert coord.next(1.0) is None
    assert coord.next_wakeup(1.0) == 5.0
    again = coord.next(5.0)
    assert again is not None
    assert again.id == "a1"
    coord.release("a", now=5.0)
    # no Retry-After: the backoff doubled from 1 s
    assert coord.rate_limited("a", None, now=5.0) == 2.0
    coord.succeeded("a")
    assert coord.rate_limited("a", None, now=5.0) == 1.0
