"""The running engine: the dispatcher, the workers, the retry waiter and the disk watcher.

Tasks under :meth:`Runner.serve` (one nursery): the dispatcher (asks the sans-IO
:class:`~hathd.engine.coordinator.Coordinator` for the next admissible job and hands it to a
worker over an unbuffered memory channel), ``workers`` workers (each with its own clone of the
receive channel) and the waiter (a heap of ``(not_before, job)`` on the wall clock; due jobs go
back to ``queued``). A try's outcome becomes a :class:`~hathd.engine.states.JobEvent`
(``succeed``, ``fail``, ``back_off``, ``requeue``, ``pause``, ``cancel``).
"""

from __future__ import annotations

import heapq
import json
import logging
import math
from typing import Any

import trio

from hathd.engine import jobstore
from hathd.engine.api import (
    Job,
    JobState,
)
from hathd.engine.records import (
    DISK,
    DISK_FULL_FREE_TRIES,
    QUEUE_PAUSE_FLAG,
    RATE_LIMITED_FREE_TRIES,
    USER,
    ActiveJob,
    HandlerContext,
    disk_full,
    stop_requested,
)
from hathd.engine.retry import classify, decide
from hathd.engine.shell import EngineShell
from hathd.engine.states import JobEvent
from hathd.errors import (
    HathdError,
    PermanentError,
    RetryableError,
    StoreError,
)
from hathd.excgroups import describe, is_cancelled

log = logging.getLogger(__name__)


class Runner(EngineShell):
    """The tasks of :class:`~hathd.engine.core.Engine` (a part of it)."""

    def _start_workers(self, count: int) -> None:
        # worker tasks are only ever added: surplus ones stay idle (the coordinator admits at
        # most ``workers`` jobs at once)
        if self._nursery is None or self._worker_recv is None:
            return
        while self._worker_count < count:
            self._nursery.start_soon(self._worker, self._worker_recv.clone())
            self._worker_count += 1

    async def _recover(self) -> None:
        now = self._wall()

        def run(conn: Any) -> tuple[list[Job], int, int, str | None]:
            jobs, requeued = jobstore.recover(conn, now)
            return (
                jobs,
                requeued,
                jobstore.max_position(conn),
                jobstore.get_flag(conn, QUEUE_PAUSE_FLAG),
            )

        jobs, requeued, max_pos, paused = await self._write(run)
        old_pauses = self._coord.paused
        self._coord = self._new_coordinator()
        for reason in old_pauses:
            if reason != "shutdown":
                self._coord.pause(reason)
        if paused:
            self._coord.pause(USER)
        self._jobs = {}
        self._orphans = set()
        self._timers = []
        self._next_position = max(self._next_position, max_pos)
        queued: list[tuple[str, str, int, int]] = []
        for job in jobs:
            ref = ActiveJob(job)
            self._jobs[job.id] = ref
            if job.state is JobState.QUEUED:
                queued.append((job.id, job.domain, job.priority, job.position))
            elif job.state is JobState.WAITING:
                self._add_timer(ref, job.not_before or now)
        self._coord.add_many(queued, now=trio.current_time())
        log.info(
            "engine: %d active jobs loaded (%d queued, %d were running and are queued again)",
            len(jobs),
            len(queued),
            requeued,
        )

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the dispatcher, ``workers`` workers, the waiter and the disk watcher until
        cancelled.

        Loads the active jobs first (``running`` → ``queued``; ``waiting`` keep their
        ``not_before``), then reports readiness. On cancellation, running jobs are written back
        as ``queued`` before this returns.
        """
        await self._recover()
        send, recv = trio.open_memory_channel[ActiveJob](0)
        try:
            async with recv, trio.open_nursery() as nursery:
                self._nursery = nursery
                self._worker_recv = recv
                self._worker_count = 0
                self._start_workers(self.config.workers)
                nursery.start_soon(self._waiter)
                nursery.start_soon(self._dispatcher, send)
                nursery.start_soon(self._disk_watch)
                if self.stopping is not None:
                    nursery.start_soon(self._watch_stopping, self.stopping)
                self._serving = True
                self._kick.set()
                task_status.started()
        finally:
            self._nursery = None
            self._worker_recv = None
            self._worker_count = 0

    async def drain(self, grace: float) -> int:
        """Stop starting jobs (pause reason ``"shutdown"``) and wait up to ``grace`` seconds for
        running jobs to finish; returns how many are still running."""
        self._coord.pause("shutdown")
        with trio.move_on_after(grace):
            while self._coord.running:
                event = trio.Event()
                self._drain_event = event
                await event.wait()
        return self._coord.running

    async def _disk_watch(self) -> None:
        """Every ``disk_check_interval`` seconds while there is work (queued or running jobs,
        or a disk pause to lift), compare the free space under the download root with
        ``min_free_bytes``; woken early by :meth:`reconfigure`."""
        while True:
            # a fresh event before the check: a reconfigure() during it is not lost
            kick = self._disk_kick = trio.Event()
            if len(self._coord) or self._coord.running or DISK in self._coord.paused:
                await self._check_disk()
            with trio.move_on_after(self.config.disk_check_interval):
                await kick.wait()

    async def _check_disk(self) -> None:
        root = self.download_root
        try:
            free = await trio.to_thread.run_sync(self.disk_free, root)
        except OSError as exc:
            log.warning("engine: cannot read the free space of %s: %s", root, exc)
            return
        self.last_free_bytes = free
        minimum = self.config.min_free_bytes
        paused = DISK in self._coord.paused
        if free < minimum:
            if not paused:
                log.warning(
                    "engine: %d bytes free under %s (minimum %d); queue paused",
                    free,
                    root,
                    minimum,
                )
                await self.pause_queue(by=DISK)
            return
        if not paused:
            return
        full_at = self._disk_full_at
        if full_at is not None and trio.current_time() - full_at < self.config.disk_check_interval:
            return  # a job has just hit ENOSPC: give the space one full interval to come back
        log.info("engine: %d bytes free under %s; queue resumed", free, root)
        self._disk_full_at = None
        await self.resume_queue(by=DISK)

    async def _watch_stopping(self, stopping: trio.Event) -> None:
        await stopping.wait()
        log.info("engine: shutting down; no new jobs start (%d running)", self._coord.running)
        self._coord.pause("shutdown")

    async def _dispatcher(self, send: trio.MemorySendChannel[ActiveJob]) -> None:
        async with send:
            while True:
                self._kick = trio.Event()
                now = trio.current_time()
                while (picked := self._coord.next(now)) is not None:
                    ref = self._jobs.get(picked.id)
                    if ref is None or ref.state is not JobState.QUEUED:
                        self._coord.release(picked.domain, now=now)
                        continue
                    if ref.kind not in self._kinds:
                        # no handler (yet): keep it queued in the store, out of the way
                        self._coord.release(picked.domain, now=now)
                        self._orphans.add(ref)
                        continue
                    self._set_state(ref, JobEvent.DISPATCH)
                    await send.send(ref)
                    now = trio.current_time()
                wake = self._coord.next_wakeup(trio.current_time())
                timeout = math.inf if wake is None else max(0.0, wake - trio.current_time())
                with trio.move_on_after(timeout):
                    await self._kick.wait()

    async def _waiter(self) -> None:
        while True:
            self._waiter_kick = trio.Event()
            now = self._wall()
            due: list[ActiveJob] = []
            while self._timers and self._timers[0][0] <= now:
                when, job_id = heapq.heappop(self._timers)
                ref = self._jobs.get(job_id)
                if ref is not None and ref.state is JobState.WAITING and ref.not_before == when:
                    due.append(ref)
            if due:
                await self._wake(due)
                continue
            timeout = math.inf
            if self._timers:
                timeout = min(60.0, max(0.0, self._timers[0][0] - now))
            with trio.move_on_after(timeout):
                await self._waiter_kick.wait()

    async def _wake(self, refs: list[ActiveJob]) -> None:
        now = self._wall()
        ids = [r.id for r in refs]
        for ref in refs:
            self._set_state(ref, JobEvent.WAKE, source=JobState.WAITING)
        changes = self._row_change(
            JobState.WAITING, JobEvent.WAKE, {"not_before": None, "updated_at": now}
        )

        def run(conn: Any) -> list[Job]:
            out = []
            for job_id in ids:
                job = jobstore.transition(conn, job_id, (JobState.WAITING,), changes)
                if job is not None:
                    out.append(job)
            return out

        jobs = await self._write(run)
        for job in jobs:
            woken = self._jobs.get(job.id)
            if woken is not None and woken.state is JobState.QUEUED:
                self._enqueue(woken)
            self._publish(job)

    async def _worker(self, recv: trio.MemoryReceiveChannel[ActiveJob]) -> None:
        async with recv:
            async for ref in recv:
                await self._run(ref)

    async def _run(self, ref: ActiveJob) -> None:
        started = self._wall()
        ref.progress = None
        ref.throttle = None
        try:
            job = await self._tx.transition(
                ref.id,
                (JobState.QUEUED,),
                self._row_change(
                    JobState.QUEUED,
                    JobEvent.DISPATCH,
                    {"updated_at": started, "not_before": None},
                ),
                bump_attempts=True,
            )
        except StoreError:
            log.exception("engine: cannot start job %s; it stays queued", ref.id)
            self._release(ref)
            # try again later, without spinning on a failing store
            self._coord.rate_limited(ref.domain, 5.0, now=trio.current_time())
            self._set_state(ref, JobEvent.REQUEUE, source=JobState.RUNNING)
            self._enqueue(ref)
            return
        if job is None:
            log.warning("engine: job %s changed under the dispatcher; reloading it", ref.id)
            self._release(ref)
            await self._resync(ref.id)
            return
        self._started += 1
        self._publish(job)
        kind = self._kinds.get(job.kind)
        ctx = HandlerContext(self, ref, job)
        timeout = job.timeout or self.config.job_timeout
        result: dict[str, Any] | None = None
        error: BaseException | None = None
        stopped = False
        try:
            if ref.stop_action is not None:
                stopped = True
            elif kind is None:
                error = PermanentError(f"no handler registered for kind {job.kind!r}")
            else:
                # one scope for both a user's stop (scope.cancel()) and the timeout (its
                # deadline): a cancellation without a stop request is the timeout
                with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
                    ref.scope = scope
                    if stop_requested(ref):
                        scope.cancel()
                    result = await kind.handler(ctx)
                if scope.cancelled_caught:
                    if stop_requested(ref):
                        stopped = True
                    else:
                        error = RetryableError(f"timed out after {timeout:g} s")
        except BaseException as exc:
            if is_cancelled(exc):
                ref.scope = None
                ctx.cleanup()
                with trio.CancelScope(shield=True):
                    await self._requeue(ref)
                raise
            error = exc
        finally:
            ref.scope = None
        ctx.cleanup()
        if stopped:
            await self._stopped(ref)
        elif error is not None:
            await self._failed(ref, job, error)
        else:
            await self._succeeded(ref, job, result)
        if ref.settled is not None:
            ref.settled.set()
            ref.settled = None
        ref.stop_action = None

    async def _requeue(self, ref: ActiveJob) -> None:
        self._release(ref)
        ref.progress = None
        try:
            job = await self._move_state(ref, JobEvent.REQUEUE, source=JobState.RUNNING)
        except StoreError:
            log.exception("engine: cannot requeue job %s (restart will)", ref.id)
            return
        if job is not None:
            self._enqueue_if_queued(ref)

    async def _stopped(self, ref: ActiveJob) -> None:
        self._release(ref)
        ref.progress = None
        action = ref.stop_action
        if action == "pause":
            await self._move_state(
                ref, JobEvent.PAUSE, {"paused_by": ref.pause_reason}, source=JobState.RUNNING
            )
        elif action == "cancel":
            job = await self._move_state(ref, JobEvent.CANCEL, source=JobState.RUNNING)
            if job is not None:
                await self._final_hook(job)
        else:
            job = await self._move_state(ref, JobEvent.REQUEUE, source=JobState.RUNNING)
            if job is not None:
                self._enqueue_if_queued(ref)

    async def _succeeded(self, ref: ActiveJob, job: Job, result: dict[str, Any] | None) -> None:
        if result is not None:
            try:
                json.dumps(result, allow_nan=False)
            except (TypeError, ValueError, RecursionError) as exc:
                await self._failed(
                    ref, job, PermanentError(f"handler result is not JSON-serialisable: {exc}")
                )
                return
        self._release(ref)
        self._coord.succeeded(ref.domain)
        final = await self._move_state(
            ref,
            JobEvent.SUCCEED,
            {"result": result, "error": None, "error_class": None},
            source=JobState.RUNNING,
        )
        if final is not None:
            await self._final_hook(final)

    async def _failed(self, ref: ActiveJob, job: Job, error: BaseException) -> None:
        self._release(ref)
        ref.progress = None
        ref.throttle = None
        if disk_full(error):
            if DISK not in self._coord.paused:
                log.warning(
                    "engine: job %s ran out of disk space (%s); queue paused",
                    job.id,
                    describe(error),
                )
                await self.pause_queue(by=DISK)
            self._disk_full_at = trio.current_time()
            if ref.disk_full_tries < DISK_FULL_FREE_TRIES:
                ref.disk_full_tries += 1
                await self._out_of_space(ref, job, error)
                return
        preset = self._preset_for(job)
        decision = decide(preset, max(1, job.attempts), error, self._rng)
        text = describe(error)
        error_class = "timeout" if isinstance(error, trio.TooSlowError) else classify(error)
        if isinstance(error, RetryableError) and str(error).startswith("timed out after"):
            error_class = "timeout"
        if not isinstance(error, HathdError | trio.TooSlowError):
            log.warning("job %s (%s) raised %s", job.id, job.kind, text)
        attempts = job.attempts
        if decision.rate_limited:
            self._coord.rate_limited(ref.domain, decision.retry_after, now=trio.current_time())
            self._kick.set()
            if ref.rate_limited_tries < RATE_LIMITED_FREE_TRIES:
                ref.rate_limited_tries += 1
                attempts = max(0, job.attempts - 1)
                if decision.delay is None:
                    decision = decide(preset, 1, error, self._rng)
        if decision.delay is None:
            final = await self._move_state(
                ref,
                JobEvent.FAIL,
                {"error": text, "error_class": error_class},
                source=JobState.RUNNING,
            )
            if final is not None:
                await self._final_hook(final)
            return
        not_before = self._wall() + decision.delay
        self._set_state(ref, JobEvent.BACK_OFF, source=JobState.RUNNING)
        changes = self._row_change(
            JobState.RUNNING,
            JobEvent.BACK_OFF,
            {
                "not_before": not_before,
                "attempts": attempts,
                "error": text,
                "error_class": error_class,
            },
        )
        waiting = await self._tx.transition(ref.id, (JobState.RUNNING,), changes)
        if waiting is not None:
            if self._jobs.get(ref.id) is ref and ref.state is JobState.WAITING:
                self._add_timer(ref, not_before)
            self._publish(waiting)

    async def _out_of_space(self, ref: ActiveJob, job: Job, error: BaseException) -> None:
        """The handler ran out of disk space (the queue is already paused, ``"disk"``): queue
        the job again without counting the try; the disk watcher lifts the pause once there
        is room. Past :data:`DISK_FULL_FREE_TRIES` such tries the job fails like any other."""
        text = describe(error)
        queued = await self._move_state(
            ref,
            JobEvent.REQUEUE,
            {
                "attempts": max(0, job.attempts - 1),
                "error": text,
                "error_class": "disk_full",
            },
            source=JobState.RUNNING,
        )
        if queued is not None:
            self._enqueue_if_queued(ref)
