"""Progress throttling (sans-IO): publish at most on a >= 1 % step or after >= 1 s.

docs/engine.md ("Events"): every throttled progress update goes to the ``progress`` room; not
every update is persisted. Rate is measured between published updates (units/s) and smoothed with an
exponential moving average; ETA = remaining / rate (seconds).
"""

from __future__ import annotations

from hathd.engine.api import Progress


class ProgressThrottle:
    """Decides which progress reports are published, and computes rate and ETA.

    :param min_interval: seconds after which any change is published (default 1 s).
    :param min_fraction: fraction of ``total`` after which a change is published (1 %).
    """

    __slots__ = ("_last_done", "_last_frac", "_last_time", "_rate", "min_fraction", "min_interval")

    def __init__(self, *, min_interval: float = 1.0, min_fraction: float = 0.01) -> None:
        self.min_interval = min_interval
        self.min_fraction = min_fraction
        self._last_time: float | None = None
        self._last_done = 0
        self._last_frac = -1.0
        self._rate: float | None = None

    def update(
        self, done: int, total: int | None, now: float, *, message: str | None = None
    ) -> Progress | None:
        """Feed one report at ``now`` (seconds); returns the :class:`Progress` to publish, or
        ``None`` when the report is throttled away."""
        first = self._last_time is None
        elapsed = 0.0 if self._last_time is None else now - self._last_time
        frac = (done / total) if total else None
        finished = total is not None and done >= total
        due = first or finished or elapsed >= self.min_interval
        if not due and frac is not None and frac - self._last_frac >= self.min_fraction:
            due = True
        if not due:
            return None
        if not first and elapsed > 0:
            sample = max(0, done - self._last_done) / elapsed
            self._rate = sample if self._rate is None else 0.5 * self._rate + 0.5 * sample
        self._last_time = now
        self._last_done = done
        if frac is not None:
            self._last_frac = frac
        eta = None
        if total is not None and self._rate:
            eta = max(0, total - done) / self._rate
        return Progress(done=done, total=total, rate=self._rate, eta=eta, message=message)
