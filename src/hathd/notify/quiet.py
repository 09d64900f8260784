"""Quiet hours (sans-IO): a daily window of local wall-clock time, e.g. ``22:00-07:00``.

A window is ``HH:MM-HH:MM``; the start is inside it, the end is not. A start later than the
end spans midnight (``22:00-07:00`` holds 23:30 and 06:59, not 07:00). An empty text means
no window. Times are the local wall clock of the ``datetime`` given (aware or naive), so a
daylight-saving change moves the window with the clock, as people expect.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

import attrs

_WINDOW_RE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")


@attrs.frozen
class QuietHours:
    """A daily window ``start``..``end`` (local time; ``start > end`` spans midnight)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """``"22:00-07:00"`` → a window; ``""`` → ``None``.

        :raises ValueError: not ``HH:MM-HH:MM`` (24-hour clock), or start equals end.
        """
        text = text.strip()
        if not text:
            return None
        m = _WINDOW_RE.fullmatch(text)
        if m is None:
            raise ValueError(f"expected HH:MM-HH:MM (24-hour clock), got {text!r}")
        start = time(int(m[1]), int(m[2]))
        end = time(int(m[3]), int(m[4]))
        if start == end:
            raise ValueError(f"an empty window: {text!r} starts and ends at the same minute")
        return cls(start, end)

    def contains(self, now: datetime) -> bool:
        """Whether the wall-clock time of ``now`` lies inside the window."""
        t = now.time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def ends_after(self, now: datetime) -> datetime:
        """The first moment at or after ``now`` that lies outside the window (``now`` itself
        when it is outside). Same tzinfo as ``now``."""
        if not self.contains(now):
            return now
        end = now.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        if end <= now:
            end += timedelta(days=1)
        return end


def check_window(text: str) -> None:
    """Validate a quiet-hours text (for config validators).

    :raises ValueError: see :meth:`QuietHours.parse`.
    """
    QuietHours.parse(text)
