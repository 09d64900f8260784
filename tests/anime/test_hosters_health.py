"""Hoster health: success rate, latency, cool-down (sans-IO, ``now`` passed in)."""

from __future__ import annotations

import pytest
import trio

from hathd.anime.gate import DomainGate
from hathd.anime.health import HosterHealth
from hathd.engine.lanes import LaneSettings


def test_consecutive_failures_start_a_cool_down_that_doubles() -> None:
    health = HosterHealth(cooldown=60.0, max_cooldown=200.0, failure_threshold=3)
    assert not health.record_failure("voe", "HTTP 500", now=0.0)
    assert not health.record_failure("voe", "HTTP 500", now=1.0)
    assert health.available("voe", now=1.0)
    assert health.record_failure("voe", "HTTP 502", now=2.0)
    assert not health.available("voe", now=61.0)
    assert health.cooldown_left("voe", now=32.0) == pytest.approx(30.0)
    assert health.available("voe", now=62.0)
    assert health.record_failure("voe", "again", now=62.0)  # still failing: twice as long
    assert health.cooldown_left("voe", now=62.0) == pytest.approx(120.0)
    assert health.record_failure("voe", "again", now=200.0)
    assert health.cooldown_left("voe", now=200.0) == pytest.approx(200.0)  # capped
    status = health.status("voe", now=200.0)
    assert (status.attempts, status.successes, status.consecutive_failures) == (5, 0, 5)
    assert status.last_error == "again"
    assert health.available("vidoza", now=200.0)  # others are untouched


def test_a_success_ends_the_streak_and_the_cool_down() -> None:
    health = HosterHealth(cooldown=60.0, failure_threshold=2, min_success_rate=0.0)
    health.record_failure("voe", "x", now=0.0)
    health.record_success("voe", 2.0, now=1.0)
    assert not health.record_failure("voe", "x", now=2.0)
    assert health.record_failure("voe", "x", now=3.0)
    assert health.cooldown_left("voe", now=3.0) == pytest.approx(60.0)


def test_a_low_success_rate_sets_a_hoster_aside() -> None:
    health = HosterHealth(cooldown=10.0, failure_threshold=3, min_success_rate=0.5)
    for at in range(3):
        health.record_success("dood", 1.0, now=float(at))
    outcomes = [health.record_failure("dood", "x", now=10.0 + i) for i in range(3)]
    assert outcomes == [False, False, True]
    health2 = HosterHealth(cooldown=10.0, failure_threshold=3, min_success_rate=0.5)
    health2.record_success("s", 1.0, now=0.0)
    health2.record_failure("s", "x", now=1.0)
    health2.record_success("s", 1.0, now=2.0)
    assert health2.record_failure("s", "x", now=3.0) is False  # 2 of 4: not below half
    assert health2.record_failure("s", "x", now=4.0) is True  # 2 of 5, 2 in a row


def test_latency_is_a_weighted_mean_and_rate_is_over_the_window() -> None:
    health = HosterHealth()
    health.record_success("vidoza", 10.0, now=0.0)
    health.record_success("vidoza", 0.0, now=1.0)
    status = health.status("vidoza", now=1.0)
    assert status.latency == pytest.approx(7.0)
    assert status.success_rate == 1.0
    assert [s.hoster for s in health.snapshot(now=1.0)] == ["vidoza"]
    assert health.status("never", now=0.0).success_rate is None


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        HosterHealth(failure_threshold=0)


async def test_the_gate_spaces_requests_to_one_domain_by_its_rate(autojump_clock: object) -> None:
    gate = DomainGate(default=LaneSettings(concurrency=1, rate=2.0, burst=1))
    times: list[float] = []
    for _ in range(3):
        async with gate.request("cdn.example"):
            times.append(trio.current_time())
    assert times[1] - times[0] == pytest.approx(0.5)
    assert times[2] - times[1] == pytest.approx(0.5)
    async with gate.request("other.example"):  # its own bucket: no wait
        assert trio.current_time() == pytest.approx(times[2])


async def test_the_gate_holds_a_domain_to_its_concurrency(autojump_clock: object) -> None:
    gate = DomainGate(lambda domain: LaneSettings(concurrency=2, rate=0.0, burst=1))
    peak = 0

    async def one() -> None:
        nonlocal peak
        async with gate.request("hoster.example"):
            peak = max(peak, gate.busy()["hoster.example"])
            await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(one)
    assert peak == 2
    assert gate.busy() == {}


def test_export_and_restore_keep_the_cool_down_across_clocks() -> None:
    before = HosterHealth(cooldown=60.0, failure_threshold=2)
    before.record_success("voe", 2.0, now=0.0)
    before.record_failure("voe", "HTTP 500", now=1.0)
    assert before.record_failure("voe", "HTTP 502", now=2.0)
    data = before.export("voe", now=12.0, wall=1_000.0)  # 50 s of cool-down left
    assert data["outcomes"] == "100"
    assert data["cooldown_until"] == pytest.approx(1_050.0)
    # a restart: another monotonic origin, 20 s of wall time later
    after = HosterHealth(cooldown=60.0, failure_threshold=2)
    after.restore("voe", data, now=5_000.0, wall=1_020.0)
    assert not after.available("voe", now=5_029.0)
    assert after.available("voe", now=5_030.5)
    status = after.status("voe", now=5_000.0)
    assert (status.attempts, status.successes, status.consecutive_failures) == (3, 1, 2)
    assert status.latency == pytest.approx(2.0)
    assert status.last_error == "HTTP 502"
    # the streak goes on where it was: the next cool-down is twice as long
    assert after.record_failure("voe", "again", now=5_031.0)
    assert after.cooldown_left("voe", now=5_031.0) == pytest.approx(120.0)


def test_restore_refuses_a_bad_record_and_changes_nothing() -> None:
    health = HosterHealth()
    good = health.export("voe")
    for bad in (
        {},
        {**good, "outcomes": "10x"},
        {**good, "latency": float("nan")},
        {**good, "consecutive_failures": -1},
        {**good, "cooldown_until": "soon"},
        {**good, "last_error": 5},
    ):
        with pytest.raises(ValueError, match="voe"):
            health.restore("voe", bad)
    assert health.hosters() == []
