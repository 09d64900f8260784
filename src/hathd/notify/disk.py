"""The disk-space watch: a ``disk_full`` notification when a file system nearly fills.

:class:`DiskAlarm` is the sans-IO core: fed ``(path, used_percent)`` readings, it says when to
warn: once when the use reaches the threshold, and again only after it fell 2 points below
it (hysteresis, so a disk hovering at the threshold does not notify every check).
:class:`DiskWatch` is the Trio shell reading ``os.statvfs`` in a worker thread every
``interval`` seconds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
import trio

from hathd.notify.config import DiskRoute

log = logging.getLogger(__name__)

HYSTERESIS = 2.0
"""Percentage points below the threshold a file system must fall to warn again."""


@attrs.frozen
class DiskReading:
    """One file system seen from ``path``: ``used_percent`` (0–100), ``free_bytes``,
    ``total_bytes``."""

    path: str
    used_percent: float
    free_bytes: int
    total_bytes: int


def read_disk(path: str) -> DiskReading:
    """``os.statvfs`` of ``path`` as a reading (blocking). Used counts blocks reserved for
    root as used, as ``df`` does (used / (used + available)).

    :raises OSError: the path cannot be read.
    """
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    denom = used + free
    percent = 100.0 * used / denom if denom else 0.0
    return DiskReading(path, percent, free, total)


class DiskAlarm:
    """Decides when a reading warrants a warning (see module docstring)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._alarmed: set[str] = set()

    def feed(self, reading: DiskReading) -> bool:
        """Whether to warn about ``reading`` now."""
        if reading.used_percent >= self.threshold:
            if reading.path in self._alarmed:
                return False
            self._alarmed.add(reading.path)
            return True
        if reading.used_percent < self.threshold - HYSTERESIS:
            self._alarmed.discard(reading.path)
        return False


def _size(n: int) -> str:
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if n >= 1024 else f"{n} B"
    raise AssertionError("unreachable")


def warning_text(reading: DiskReading, threshold: float) -> tuple[str, str]:
    """Title and body of the ``disk_full`` message for ``reading``."""
    return (
        f"Disk nearly full: {reading.path}",
        f"{reading.used_percent:.1f} % used, {_size(reading.free_bytes)} free of "
        f"{_size(reading.total_bytes)} (threshold {threshold:g} %)",
    )


class DiskWatch:
    """Checks ``paths`` every ``route.interval`` seconds and calls ``warn(title, body)``."""

    def __init__(
        self,
        route: DiskRoute,
        paths: Sequence[str],
        warn: Callable[[str, str], object],
        *,
        read: Callable[[str], DiskReading] = read_disk,
    ) -> None:
        self.route = route
        self.paths = [str(Path(p).expanduser()) for p in paths]
        self._warn = warn
        self._read = read
        self.alarm = DiskAlarm(route.threshold_percent)
        self.checks = 0
        self.warnings = 0
        self.last: dict[str, float] = {}

    async def check(self) -> None:
        """One look at every path (an unreadable path is logged and skipped)."""
        self.checks += 1
        for path in self.paths:
            try:
                reading = await trio.to_thread.run_sync(self._read, path)
            except OSError as exc:
                log.warning("disk watch: cannot read %s: %s", path, exc)
                continue
            self.last[path] = round(reading.used_percent, 1)
            if self.alarm.feed(reading):
                self.warnings += 1
                self._warn(*warning_text(reading, self.route.threshold_percent))

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Check every ``interval`` seconds until cancelled."""
        task_status.started()
        while True:
            await self.check()
            await trio.sleep(self.route.interval)

    def statistics(self) -> dict[str, object]:
        """Checks made, warnings sent, the last use (percent) of each path."""
        return {"checks": self.checks, "warnings": self.warnings, "used_percent": dict(self.last)}
