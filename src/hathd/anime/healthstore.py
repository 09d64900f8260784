"""Hoster health kept in the store, so that a restart neither forgets a failing hoster's
cool-down nor the latency and success rate measured so far.

:class:`HealthKeeper` loads every stored record into the :class:`~hathd.anime.health.HosterHealth`
at start-up and, as a service task, writes each hoster whose health changed soon after the
change (every change noted while one write is in flight goes into the next one), and once more
at shutdown. A kill between an outcome and its write loses that one outcome: health is advice
for choosing hosters, not a record anything else depends on.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from hathd.anime.health import HosterHealth
from hathd.anime.store import AnimeStore
from hathd.errors import StoreError

log = logging.getLogger(__name__)


class HealthKeeper:
    """Persists ``health`` through ``db`` (sets ``health.on_change``)."""

    def __init__(self, health: HosterHealth, db: AnimeStore) -> None:
        self.health = health
        self.db = db
        self._dirty: set[str] = set()
        self._kick = trio.Event()
        self.writes = 0
        health.on_change = self._mark

    def _mark(self, hoster: str) -> None:
        self._dirty.add(hoster)
        self._kick.set()

    async def load(self) -> int:
        """Restore every stored record; returns how many. A record that cannot be read is
        logged and skipped (that hoster starts afresh)."""
        count = 0
        for hoster, data in (await self.db.hoster_health()).items():
            try:
                self.health.restore(hoster, data)
            except ValueError as exc:
                log.warning("anime: stored hoster health skipped: %s", exc)
                continue
            count += 1
        return count

    async def flush(self) -> None:
        """Write the records of the hosters changed since the last write.

        :raises StoreError: the write failed (the hosters stay marked for the next one).
        """
        if not self._dirty:
            return
        hosters, self._dirty = self._dirty, set()
        records: dict[str, dict[str, Any]] = {h: self.health.export(h) for h in hosters}
        try:
            await self.db.save_hoster_health(records)
        except StoreError:
            self._dirty |= hosters
            raise
        self.writes += 1

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Write changes as they come until cancelled, then a last time (at most 5 s)."""
        task_status.started()
        try:
            while True:
                await self._kick.wait()
                self._kick = trio.Event()
                try:
                    await self.flush()
                except StoreError as exc:
                    log.warning("anime: cannot store hoster health: %s", exc)
                    await trio.sleep(5)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                try:
                    await self.flush()
                except StoreError as exc:
                    log.warning("anime: cannot store hoster health at shutdown: %s", exc)

    def statistics(self) -> dict[str, Any]:
        """Hosters known, writes made, hosters waiting to be written."""
        return {
            "hosters": len(self.health.hosters()),
            "writes": self.writes,
            "pending": len(self._dirty),
        }
