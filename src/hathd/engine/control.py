"""The user's operations on jobs: pause, resume, retry, cancel, remove, clear, move.

Each checks the job's state against :mod:`hathd.engine.states` and applies the change through
:class:`~hathd.engine.shell.EngineShell`; a running job is stopped through its cancel scope and
its worker writes the outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import trio

from hathd.engine import jobstore
from hathd.engine.api import (
    InvalidInput,
    Job,
    JobState,
)
from hathd.engine.records import (
    POSITION_GAP,
    POSITION_LIMIT,
    USER,
    ActiveJob,
)
from hathd.engine.shell import EngineShell
from hathd.engine.states import FINAL_STATES, JobEvent, allowed, sources
from hathd.engine.validate import check_priority
from hathd.errors import (
    JobConflict,
)

log = logging.getLogger(__name__)


class JobControl(EngineShell):
    """The job operations of :class:`~hathd.engine.core.Engine` (a part of it)."""

    async def _settle(self, ref: ActiveJob, action: str, timeout: float) -> None:
        ref.stop_action = action
        if ref.settled is None:
            ref.settled = trio.Event()
        settled = ref.settled
        if ref.scope is not None:
            ref.scope.cancel()
        with trio.move_on_after(timeout):
            await settled.wait()

    async def pause_job(self, job_id: str, *, by: str = USER, timeout: float = 30.0) -> Job:
        """Pause a queued, waiting or running job (a running one is stopped and kept).

        :raises JobNotFound: no such job.
        :raises JobConflict: the job is finished.
        """
        ref = self._jobs.get(job_id)
        if ref is None:
            job = await self._require(job_id)
            raise JobConflict(f"job {job_id} is {job.state}; only active jobs can be paused")
        ref.pause_reason = by
        if ref.state is JobState.RUNNING:
            # the worker applies the pause once the handler has stopped
            await self._settle(ref, "pause", timeout)
        elif allowed(ref.state, JobEvent.PAUSE):
            if ref.state is JobState.QUEUED:
                self._coord.remove(job_id)
            await self._move_state(ref, JobEvent.PAUSE, {"paused_by": by})
        return await self._require(job_id)

    async def resume_job(self, job_id: str) -> Job:
        """Put a paused job back in the queue (no-op for other active jobs).

        :raises JobNotFound: no such job.
        :raises JobConflict: the job is finished (use retry).
        """
        ref = self._jobs.get(job_id)
        if ref is None:
            job = await self._require(job_id)
            raise JobConflict(f"job {job_id} is {job.state}; use retry for finished jobs")
        if allowed(ref.state, JobEvent.RESUME):
            source = ref.state
            self._set_state(ref, JobEvent.RESUME)
            changes = self._row_change(
                source, JobEvent.RESUME, {"paused_by": None, "not_before": None}
            )
            resumed = await self._write(
                lambda conn: jobstore.transition(conn, job_id, (source,), changes)
            )
            if resumed is not None:
                self._enqueue_if_queued(ref)
                self._publish(resumed)
        return await self._require(job_id)

    async def retry_job(self, job_id: str) -> Job:
        """Queue a finished job again (attempts reset), or run a waiting job now.

        :raises JobNotFound: no such job.
        :raises JobConflict: the job is queued, running or paused, or another active job has
            its ``dedupe_key``.
        """
        ref = self._jobs.get(job_id)
        if ref is not None:
            # an active job: only a waiting one can be retried, i.e. woken at once
            if not allowed(ref.state, JobEvent.WAKE):
                raise JobConflict(f"job {job_id} is {ref.state}; nothing to retry")
            source = ref.state
            self._set_state(ref, JobEvent.WAKE)
            changes = self._row_change(source, JobEvent.WAKE, {"not_before": None})
            job = await self._write(
                lambda conn: jobstore.transition(conn, job_id, (source,), changes)
            )
            if job is not None:
                self._enqueue_if_queued(ref)
                self._publish(job)
            return await self._require(job_id)
        pending = self._final_pending.get(job_id)
        if pending is not None:
            await pending.wait()  # the final hook of the try that ended (e.g. a part file)
        current = await self._require(job_id)
        if not allowed(current.state, JobEvent.RETRY):
            raise JobConflict(f"job {job_id} is {current.state}; nothing to retry")
        changes = self._row_change(
            current.state,
            JobEvent.RETRY,
            {
                "attempts": 0,
                "error": None,
                "error_class": None,
                "result": None,
                "finished_at": None,
                "not_before": None,
                "paused_by": None,
                "checkpoint": None,
            },
        )
        try:
            job = await self._write(
                lambda conn: jobstore.transition(conn, job_id, sources(JobEvent.RETRY), changes)
            )
        except Exception as exc:
            if "UNIQUE" in str(exc):
                raise JobConflict(
                    f"job {job_id}: another active job has dedupe_key {current.dedupe_key!r}"
                ) from None
            raise
        if job is None:
            return await self._require(job_id)
        new_ref = ActiveJob(job)
        self._jobs[job_id] = new_ref
        self._enqueue(new_ref)
        self._publish(job)
        return job

    async def cancel_job(self, job_id: str, *, timeout: float = 30.0) -> Job:
        """Cancel an active job (a running one is stopped); it stays in the history. The
        kind's ``on_final`` hook runs (a download deletes its partial file).

        :raises JobNotFound: no such job.
        :raises JobConflict: the job is already finished.
        """
        ref = self._jobs.get(job_id)
        if ref is None:
            job = await self._require(job_id)
            raise JobConflict(f"job {job_id} is already {job.state}")
        if ref.state is JobState.RUNNING:
            await self._settle(ref, "cancel", timeout)
        else:
            if ref.state is JobState.QUEUED:
                self._coord.remove(job_id)
            cancelled = await self._move_state(ref, JobEvent.CANCEL, {"paused_by": None})
            if cancelled is not None:
                await self._final_hook(cancelled)
        return await self._require(job_id)

    async def remove_job(self, job_id: str) -> dict[str, Any]:
        """Cancel an active job, or delete a finished one from the history.

        Returns ``{"id", "state"}`` for a cancel, ``{"id", "removed": True}`` for a delete.

        :raises JobNotFound: no such job.
        """
        if job_id in self._jobs:
            job = await self.cancel_job(job_id)
            return {"id": job_id, "state": str(job.state), "removed": False}
        await self._require(job_id)
        count = await self._write(lambda conn: jobstore.delete_jobs(conn, [job_id]))
        if count:
            self.bus.publish("jobs", "removed", {"id": job_id})
        return {"id": job_id, "removed": bool(count)}

    async def clear_history(self, states: Sequence[str] = ("done",)) -> int:
        """Delete every finished job in ``states``; returns how many.

        :raises InvalidInput: a state that is not ``done``, ``failed`` or ``cancelled``.
        """
        allowed = {str(s) for s in FINAL_STATES}
        for state in states:
            if state not in allowed:
                raise InvalidInput(
                    "state", f"must be one of done, failed, cancelled; got {state!r}"
                )
        ids = await self._write(lambda conn: jobstore.clear_history(conn, list(states)))
        if ids:
            self.bus.publish("jobs", "cleared", {"ids": ids, "states": list(states)})
        return len(ids)

    def _queue_order(self) -> list[ActiveJob]:
        refs = [
            r
            for r in self._jobs.values()
            if r.state in (JobState.QUEUED, JobState.PAUSED, JobState.WAITING)
        ]
        refs.sort(key=lambda r: (-r.priority, r.position))
        return refs

    async def move_job(
        self,
        job_id: str,
        *,
        position: int | None = None,
        how: str = "set",
        priority: int | None = None,
    ) -> dict[str, Any]:
        """Change a job's priority and/or its place in the queue (aria2 ``changePosition``).

        ``how``: ``"set"`` (``position`` is the 0-based place in the queue, 0 … 10⁹),
        ``"cur"`` (``position`` is an offset from the current place, ±10⁹), ``"end"`` (last).
        ``priority``: an integer within ±10⁹. Priority sorts first, so the place is clamped to
        the band of jobs with the same priority. Returns ``{"id", "priority", "position"}``
        with the 0-based place reached. Nothing changes in memory until the store has
        committed the move.

        :raises JobNotFound: no such job.
        :raises JobConflict: the job is not queued, paused or waiting.
        :raises InvalidInput: a bad ``how``, ``position`` or ``priority`` (named in ``field``).
        """
        if how not in ("set", "cur", "end"):
            raise InvalidInput("how", "must be one of set, cur, end")
        if how != "end" and position is None and priority is None:
            raise InvalidInput("position", "required unless how is 'end' or priority is given")
        if priority is not None:
            check_priority(priority)
        if position is not None:
            if isinstance(position, bool) or not isinstance(position, int):
                raise InvalidInput("position", f"must be an integer, got {position!r}")
            low = 0 if how == "set" else -POSITION_LIMIT
            if not low <= position <= POSITION_LIMIT:
                raise InvalidInput("position", f"must be between {low} and {POSITION_LIMIT}")
        ref = self._jobs.get(job_id)
        if ref is None or ref.state not in (JobState.QUEUED, JobState.PAUSED, JobState.WAITING):
            job = await self._require(job_id)
            raise JobConflict(f"job {job_id} is {job.state}; only waiting jobs can be moved")
        new_priority = ref.priority if priority is None else priority
        order = self._queue_order()
        current = order.index(ref)
        others = [r for r in order if r is not ref]
        if how == "set" and position is not None:
            target = position
        elif how == "cur" and position is not None:
            target = current + position
        elif how == "end":
            target = len(others)
        else:
            target = current
        lo = sum(1 for r in others if r.priority > new_priority)
        band = [r for r in others if r.priority == new_priority]
        target = max(lo, min(lo + len(band), target))
        # decided on copies: memory follows only once the write has committed
        changed: dict[str, int] = {}
        new_pos = ref.position
        if position is not None or how == "end":
            k = target - lo
            slots = [r.position for r in band]
            prev = slots[k - 1] if k > 0 else None
            nxt = slots[k] if k < len(slots) else None
            if prev is not None and nxt is not None and nxt - prev < 2:
                base = slots[0]
                slots = [base + (i + (1 if i >= k else 0)) * POSITION_GAP for i in range(len(band))]
                for r, slot in zip(band, slots, strict=True):
                    if slot != r.position:
                        changed[r.id] = slot
                prev = slots[k - 1] if k > 0 else None
                nxt = slots[k] if k < len(slots) else None
            if prev is None and nxt is not None:
                new_pos = nxt - POSITION_GAP
            elif prev is not None and nxt is None:
                new_pos = prev + POSITION_GAP
            elif prev is not None and nxt is not None:
                new_pos = (prev + nxt) // 2
        changed[ref.id] = new_pos
        now = self._wall()

        def write(conn: Any) -> list[Job]:
            conn.execute("UPDATE engine_jobs SET priority = ? WHERE id = ?", (new_priority, job_id))
            return jobstore.set_positions(conn, changed, now)

        jobs = await self._write(write)
        tnow = trio.current_time()
        for job in jobs:
            other = self._jobs.get(job.id)
            if other is not None:
                other.priority = job.priority
                other.position = job.position
                self._next_position = max(self._next_position, job.position)
                if other.state is JobState.QUEUED:
                    self._coord.add(
                        other.id, other.domain, other.priority, other.position, now=tnow
                    )
            if job.id == job_id:
                self._publish(job, "moved")
        self._kick.set()
        order = self._queue_order()
        rank = order.index(ref) if ref in order else target
        return {"id": job_id, "priority": new_priority, "position": rank}
