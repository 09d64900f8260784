"""The one Retry-After parser (RFC 9110 §10.2.3, plus RateLimit-Reset)."""

from __future__ import annotations

import httpx

from hathd.retryafter import parse_retry_after


def test_delta_seconds_and_ratelimit_reset() -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": "120"})) == 120.0
    assert parse_retry_after({"retry-after": " 5 "}) == 5.0
    assert parse_retry_after(httpx.Headers({"RateLimit-Reset": "7"})) == 7.0
    assert parse_retry_after({"Retry-After": "soon", "RateLimit-Reset": "3"}) == 3.0


def test_http_date_is_relative_to_now_and_never_negative() -> None:
    date = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert parse_retry_after(date, now=1445412470.0) == 10.0
    assert parse_retry_after(httpx.Headers(date), now=1445412480.0 - 60) == 60.0
    assert parse_retry_after(date, now=1445412490.0) == 0.0


def test_absent_or_unreadable_is_none() -> None:
    assert parse_retry_after({}) is None
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({"Retry-After": ""}) is None
    assert parse_retry_after({"RateLimit-Reset": "later"}) is None
