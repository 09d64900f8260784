"""Job transitions written together: many transitions, one closure of the store's writer.

Every worker ends one job and starts the next with two transitions (``running``, ``done``).
Given to the store one closure each, every transition pays the closure's own costs (the queue
to the writer thread, its SAVEPOINT, the wake-up of the Trio thread) on top of its one
``UPDATE``. :class:`TransitionBatcher` gathers the transitions requested while a previous
group is being committed and hands them to the store as one closure: one queue trip, one
SAVEPOINT and one wake-up for the whole group.

Durability is unchanged: :meth:`TransitionBatcher.transition` returns only after the
transaction holding its ``UPDATE`` has committed (docs/engine.md, "Durability"). Each
transition is one statement, and SQLite undoes a failing statement alone, so one failing
transition (e.g. text that is not encodable) fails alone; a failed COMMIT fails the group.

No task of its own: the first caller that finds no group in flight writes the pending group
(the *leader*); when its group has committed it hands the lead to the oldest caller still
waiting, so no caller waits for more than the group in flight plus its own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import trio

from hathd.engine import jobstore
from hathd.engine.api import Job, JobState
from hathd.store import Store, unencodable


class _Request:
    __slots__ = ("bump", "changes", "done", "error", "expect", "job_id", "lead", "result")

    def __init__(
        self, job_id: str, expect: tuple[JobState, ...], changes: dict[str, Any], bump: bool
    ) -> None:
        self.job_id = job_id
        self.expect = expect
        self.changes = changes
        self.bump = bump
        self.done = trio.Event()
        self.result: Job | None = None
        self.error: BaseException | None = None
        self.lead = False


def _apply(conn: sqlite3.Connection, group: list[_Request]) -> None:
    for req in group:
        try:
            req.result = jobstore.transition(
                conn, req.job_id, req.expect, req.changes, bump_attempts=req.bump
            )
        except Exception as exc:  # this statement alone was undone by SQLite
            req.error = exc


class TransitionBatcher:
    """Writes :func:`hathd.engine.jobstore.transition` calls in groups through ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[_Request] = []
        self._leading = False
        self.groups = 0
        """Closures written so far (for the statistics and the benchmark)."""

    async def transition(
        self,
        job_id: str,
        expect: Iterable[JobState],
        changes: dict[str, Any],
        *,
        bump_attempts: bool = False,
    ) -> Job | None:
        """:func:`hathd.engine.jobstore.transition` in the writer thread, committed before it
        returns; the wait is shielded from cancellation (the write happens regardless).

        :raises StoreError: the store is closed or the COMMIT failed.
        :raises UnencodableText: as :meth:`hathd.store.Store.write`.
        """
        req = _Request(job_id, tuple(expect), changes, bump_attempts)
        self._pending.append(req)
        if self._leading:
            with trio.CancelScope(shield=True):
                await req.done.wait()
            if not req.lead:
                return self._outcome(req)
        self._leading = True
        try:
            group, self._pending = self._pending, []
            self.groups += 1
            try:
                await self.store.write(lambda conn: _apply(conn, group))
            except BaseException as exc:
                for other in group:
                    other.error = exc
            for other in group:
                if other is not req:
                    other.done.set()
        finally:
            self._leading = False
            if self._pending:
                nxt = self._pending[0]
                nxt.lead = True
                self._leading = True
                nxt.done.set()
        return self._outcome(req)

    @staticmethod
    def _outcome(req: _Request) -> Job | None:
        if req.error is not None:
            if isinstance(req.error, UnicodeEncodeError):
                raise unencodable(req.error) from req.error
            raise req.error
        return req.result
