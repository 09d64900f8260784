"""Retry decisions (sans-IO): backoff presets and the classification of a handler's failure.

A :class:`RetryPreset` lists the waits after the 1st, 2nd, … failure (seconds, each multiplied
by a uniform jitter factor in ``[1 - jitter, 1 + jitter]``), then optionally one *final* try
after ``final_wait`` seconds (AutomatedFanfic's "Hail-Mary"), then the job fails.

Built-in presets:

- ``default``: 1, 5, 15 minutes with ±20 % jitter, then a final try after 6 hours
  (docs/engine.md, "Retry presets").
- ``fanfic``: AutomatedFanfic's policy (its source file
  ``root/app/models/retry_types.py``; docs/fanfic.md): after failure ``n`` (1 … 10) wait
  ``min(n, 20)`` minutes × uniform(0.5, 1.5); after the 11th a Hail-Mary try after 12 hours;
  the 12th failure abandons the job. 12 attempts in total.

Errors: :class:`~hathd.errors.PermanentError` fails the job at once; a
:class:`~hathd.errors.RateLimitedError` waits at least its ``retry_after``; anything else is
retryable.
"""

from __future__ import annotations

import random

import attrs

from hathd.errors import PermanentError, RateLimitedError
from hathd.excgroups import leaves


@attrs.frozen
class RetryPreset:
    """Backoff: ``delays`` (seconds after failure 1, 2, …), ``jitter`` (fraction, ±),
    ``final_wait`` (seconds before the last try; ``None``: no final try)."""

    delays: tuple[float, ...]
    jitter: float = 0.2
    final_wait: float | None = None

    @property
    def max_attempts(self) -> int:
        """Tries in total, the first one included."""
        return 1 + len(self.delays) + (1 if self.final_wait is not None else 0)

    def delay_after(self, failures: int, rng: random.Random) -> float | None:
        """Seconds to wait after ``failures`` failures (>= 1); ``None``: give up."""
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures}")
        if failures <= len(self.delays):
            base = self.delays[failures - 1]
            if self.jitter:
                base *= rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
            return max(0.0, base)
        if failures == len(self.delays) + 1 and self.final_wait is not None:
            return self.final_wait
        return None


DEFAULT_PRESET = RetryPreset(delays=(60.0, 300.0, 900.0), jitter=0.2, final_wait=6 * 3600.0)
FANFIC_PRESET = RetryPreset(
    delays=tuple(60.0 * min(n, 20) for n in range(1, 11)), jitter=0.5, final_wait=12 * 3600.0
)
BUILTIN_PRESETS: dict[str, RetryPreset] = {"default": DEFAULT_PRESET, "fanfic": FANFIC_PRESET}


@attrs.frozen
class RetryDecision:
    """``delay`` seconds before the next try, or ``None`` to fail; ``rate_limited`` when the
    remote asked to slow down (the lane is then blocked too)."""

    delay: float | None
    rate_limited: bool = False
    retry_after: float | None = None


def classify(error: BaseException) -> str:
    """``"permanent"``, ``"rate_limited"`` or ``"retryable"`` for a handler's exception; an
    exception group counts as permanent if any leaf is, else rate-limited if any leaf is."""
    found = leaves(error)
    if any(isinstance(e, PermanentError) for e in found):
        return "permanent"
    if any(isinstance(e, RateLimitedError) for e in found):
        return "rate_limited"
    return "retryable"


def retry_after_of(error: BaseException) -> float | None:
    """The largest ``retry_after`` (seconds) among the rate-limited leaves of ``error``."""
    values = [
        e.retry_after
        for e in leaves(error)
        if isinstance(e, RateLimitedError) and e.retry_after is not None
    ]
    return max(values) if values else None


def decide(
    preset: RetryPreset, failures: int, error: BaseException, rng: random.Random
) -> RetryDecision:
    """What to do after the ``failures``-th failure, which raised ``error``."""
    kind = classify(error)
    if kind == "permanent":
        return RetryDecision(None)
    delay = preset.delay_after(failures, rng)
    if kind == "rate_limited":
        after = retry_after_of(error)
        if delay is not None and after is not None:
            delay = max(delay, after)
        return RetryDecision(delay, rate_limited=True, retry_after=after)
    return RetryDecision(delay)
