"""The watchlist schedule: when followed series are checked for new episodes.

:func:`next_run` is pure (local wall-clock seconds in, seconds out); :class:`Scheduler` is the
Trio loop, with its clock and sleep injectable for tests. ``interval`` seconds after the last
run, or daily at ``at`` (``HH:MM``, local time) when set; neither = only by hand.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable

import attrs
import trio


@attrs.frozen
class Schedule:
    """``interval`` seconds (0 = none) or ``at`` ``HH:MM`` (wins over the interval)."""

    interval: float = 0.0
    at: str | None = None


def next_run(schedule: Schedule, last: float | None, now: float) -> float | None:
    """Epoch seconds of the next run after ``last`` (``None`` = never ran), or ``None`` when the
    schedule has no automatic run. A run that is due is ``now``."""
    if schedule.at is not None:
        hour, minute = (int(x) for x in schedule.at.split(":"))
        local = dt.datetime.fromtimestamp(now).astimezone()
        today = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        recent = today if today.timestamp() <= now else today - dt.timedelta(days=1)
        if last is not None and last < recent.timestamp():
            return now  # a slot passed since the last run
        return (recent + dt.timedelta(days=1)).timestamp()
    if schedule.interval <= 0:
        return None
    if last is None:
        return now
    return max(now, last + schedule.interval)


class Scheduler:
    """Runs ``check()`` on :func:`next_run`; :meth:`trigger` runs it at once.

    ``clock`` gives epoch seconds, ``sleep`` waits seconds (both injectable for a fake clock).
    ``check`` errors are logged by the caller's wrapper and never stop the loop.
    """

    def __init__(
        self,
        check: Callable[[], Awaitable[None]],
        schedule: Schedule,
        *,
        clock: Callable[[], float] = time.time,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._check = check
        self.schedule = schedule
        self._clock = clock
        self._on_error = on_error
        self.last_run: float | None = None
        self.runs = 0
        self._wake = trio.Event()
        self._manual = False

    def reschedule(self, schedule: Schedule) -> None:
        """Use ``schedule`` from now on."""
        self.schedule = schedule
        self._wake.set()

    def trigger(self) -> None:
        """Run the check now (once, even when triggered several times before it starts)."""
        self._manual = True
        self._wake.set()

    def next_due(self) -> float | None:
        """Epoch seconds of the next automatic run, or ``None``."""
        return next_run(self.schedule, self.last_run, self._clock())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The loop; never returns."""
        task_status.started()
        while True:
            due = self.next_due()
            now = self._clock()
            if not self._manual and (due is None or due > now):
                self._wake = trio.Event()
                with trio.move_on_after(float("inf") if due is None else due - now):
                    await self._wake.wait()
                continue
            self._manual = False
            self.last_run = self._clock()
            self.runs += 1
            try:
                await self._check()
            except Exception as exc:  # a failed check waits for the next turn
                if self._on_error is not None:
                    self._on_error(exc)
