"""Retry decisions for recipe requests (pure functions, no I/O, no clock).

Defaults and semantics follow ConniesUploader's feature history (3 retries, 1 s → 2 s → 4 s, ×2
capped at 30 s, ±20 % jitter; retryable 408, 429, 500, 502, 503, 504 and network errors; our
docs/recipes.md). ``Retry-After`` is read by :mod:`hathd.retryafter` (RFC 9110 §10.2.3).
"""

from __future__ import annotations

import random
from enum import StrEnum

from hathd.recipes.model import RetryPolicy


class Verdict(StrEnum):
    """What to do with a reply: accept it, retry it, log in again, or give up."""

    OK = "ok"
    RETRY = "retry"
    RELOGIN = "relogin"
    FAIL = "fail"


def backoff(policy: RetryPolicy, retry: int, rng: random.Random) -> float:
    """The wait in seconds before retry number ``retry`` (1 for the first retry):
    ``initial_backoff × multiplier^(retry-1)``, capped at ``max_backoff``, then scaled by a
    uniform factor in ``[1 - jitter, 1 + jitter]``."""
    base = min(policy.max_backoff, policy.initial_backoff * policy.multiplier ** (retry - 1))
    if policy.jitter:
        base *= rng.uniform(1.0 - policy.jitter, 1.0 + policy.jitter)
    return max(0.0, base)


def classify(
    status: int,
    *,
    policy: RetryPolicy,
    expect: list[int] | tuple[int, ...] = (),
    relogin_status: list[int] | tuple[int, ...] = (),
    final_url_is_login: bool = False,
) -> Verdict:
    """Decide on a reply's ``status``.

    ``expect`` (when non-empty) lists the accepted statuses, else any 2xx/3xx is accepted;
    ``relogin_status`` and ``final_url_is_login`` mark an expired session; statuses in
    ``policy.retryable_codes`` are retried; anything else fails.
    """
    if status in relogin_status or final_url_is_login:
        return Verdict.RELOGIN
    accepted = status in expect if expect else 200 <= status < 400
    if accepted:
        return Verdict.OK
    if status in policy.retryable_codes:
        return Verdict.RETRY
    return Verdict.FAIL
