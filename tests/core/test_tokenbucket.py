"""The one token bucket: ask-then-take (engine lanes), reserve-with-debt (throttles), reconfigure."""

from __future__ import annotations

import pytest

from hathd.tokenbucket import TokenBucket


def test_wait_then_take_never_goes_below_zero() -> None:
    bucket = TokenBucket(rate=2.0, burst=2, now=0.0)
    for _ in range(2):
        assert bucket.wait_time(0.0) == 0.0
        bucket.take(0.0)
    assert bucket.wait_time(0.0) == pytest.approx(0.5)
    bucket.take(0.0)  # taking early does not create a debt
    assert bucket.wait_time(0.25) == pytest.approx(0.25)
    assert not bucket.is_full(0.25)
    assert bucket.is_full(1.0)


def test_reserve_queues_behind_the_debt() -> None:
    bucket = TokenBucket(rate=1000.0, burst=100, now=10.0)
    assert bucket.reserve(10.0, 100) == 0.0
    assert bucket.reserve(10.0, 500) == pytest.approx(0.5)
    assert bucket.reserve(10.0, 500) == pytest.approx(1.0)
    assert bucket.reserve(11.0, 1) == pytest.approx(0.001)


def test_burst_is_at_least_one_token() -> None:
    bucket = TokenBucket(rate=1.0, burst=0, now=0.0)
    assert bucket.burst == 1.0
    assert bucket.wait_time(0.0) == 0.0


def test_unlimited_admits_everything() -> None:
    bucket = TokenBucket(rate=0, burst=1, now=0.0)
    assert {bucket.reserve(0.0, 10**9) for _ in range(5)} == {0.0}
    assert bucket.wait_time(0.0, 10**9) == 0.0
    assert bucket.is_full(0.0)


def test_reconfigure_keeps_earned_tokens_and_fills_a_formerly_unlimited_bucket() -> None:
    bucket = TokenBucket(rate=10.0, burst=10, now=0.0)
    bucket.reserve(0.0, 10)
    bucket.reconfigure(20.0, 5, now=0.1)  # earned 1 token at the old rate
    assert bucket.tokens == pytest.approx(1.0)
    assert bucket.wait_time(0.1, 5) == pytest.approx(0.2)  # 4 more at 20/s
    unlimited = TokenBucket(rate=0, burst=1, now=0.0)
    unlimited.reconfigure(100.0, 50, now=3.0)
    assert unlimited.is_full(3.0)
    assert unlimited.reserve(3.0, 50) == 0.0
    assert unlimited.reserve(3.0, 50) == pytest.approx(0.5)
