"""Backoff presets, error classification and progress throttling (sans-IO)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hathd.engine.progress import ProgressThrottle
from hathd.engine.retry import (
    DEFAULT_PRESET,
    FANFIC_PRESET,
    RetryPreset,
    classify,
    decide,
)
from hathd.errors import PermanentError, RateLimitedError, RetryableError


@given(seed=st.integers(0, 2**32 - 1))
def test_default_preset_is_1_5_15_minutes_with_jitter_then_final(seed: int) -> None:
    rng = random.Random(seed)
    for failures, base in ((1, 60), (2, 300), (3, 900)):
        delay = DEFAULT_PRESET.delay_after(failures, rng)
        assert delay is not None
        assert base * 0.8 <= delay <= base * 1.2
    assert DEFAULT_PRESET.delay_after(4, rng) == 6 * 3600
    assert DEFAULT_PRESET.delay_after(5, rng) is None
    assert DEFAULT_PRESET.max_attempts == 5


@given(seed=st.integers(0, 2**32 - 1))
def test_fanfic_preset_matches_automatedfanfic(seed: int) -> None:
    # docs/fanfic.md (AutomatedFanfic's retry_types.py): min(n,20) minutes × U(0.5,1.5) for n < 11, Hail-Mary 12 h at 11,
    # abandon at 12; 12 attempts in total
    rng = random.Random(seed)
    for n in range(1, 11):
        delay = FANFIC_PRESET.delay_after(n, rng)
        assert delay is not None
        assert 30 * n <= delay <= 90 * n
    assert FANFIC_PRESET.delay_after(11, rng) == 12 * 3600
    assert FANFIC_PRESET.delay_after(12, rng) is None
    assert FANFIC_PRESET.max_attempts == 12


def test_decisions_by_error_class() -> None:
    rng = random.Random(1)
    preset = RetryPreset(delays=(10.0,), jitter=0.0)
    assert decide(preset, 1, PermanentError("x"), rng).delay is None
    assert decide(preset, 1, RetryableError("x"), rng).delay == 10.0
    assert decide(preset, 1, OSError("x"), rng).delay == 10.0
    limited = decide(preset, 1, RateLimitedError("429", retry_after=99.0), rng)
    assert limited.delay == 99.0
    assert limited.rate_limited
    short = decide(preset, 1, RateLimitedError("429", retry_after=1.0), rng)
    assert short.delay == 10.0  # Retry-After is a minimum, not a replacement
    assert decide(preset, 2, RateLimitedError("429", retry_after=5.0), rng).delay is None
    group = ExceptionGroup("g", [RetryableError("a"), PermanentError("b")])
    assert classify(group) == "permanent"
    with pytest.raises(ValueError):
        preset.delay_after(0, rng)


def test_progress_throttle_publishes_on_one_percent_or_one_second() -> None:
    throttle = ProgressThrottle()
    published = []
    for i in range(10_001):
        p = throttle.update(i, 10_000, now=i * 0.0001)
        if p is not None:
            published.append(p)
    # first report, then every 1 % step (100 of them) — far fewer than 10,001
    assert 95 <= len(published) <= 102
    assert published[-1].done == 10_000
    assert published[-1].rate is not None
    assert abs(published[-1].rate - 10_000) < 1
    throttle = ProgressThrottle()
    assert throttle.update(0, None, now=0.0) is not None
    assert throttle.update(5, None, now=0.5) is None  # unknown total: time only
    late = throttle.update(10, None, now=1.0)
    assert late is not None
    assert late.eta is None


def test_progress_eta() -> None:
    throttle = ProgressThrottle()
    throttle.update(0, 1000, now=0.0)
    p = throttle.update(100, 1000, now=1.0)
    assert p is not None
    assert p.rate == 100.0
    assert p.eta == 9.0
