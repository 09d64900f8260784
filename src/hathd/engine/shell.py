"""The engine's shell: the state the Trio engine keeps and the effects of a state change.

State lives in two places kept in step: the ``engine_jobs`` table (the truth; every transition
is written through the store's group commit and acknowledged only once committed) and a small
in-memory record per *active* job (queued, running, waiting, paused) that drives dispatch. A
state change is decided in memory first (so concurrent requests see it at once), then written
(conditional on the expected stored state), then published on the ``jobs`` room with the full
job. Which changes exist is said by :mod:`hathd.engine.states` alone: :meth:`_set_state`,
:meth:`_row_change` and :meth:`_move_state` compute every new state with
:func:`~hathd.engine.states.next_state`.
"""

from __future__ import annotations

import heapq
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from hathd.engine import jobstore
from hathd.engine.api import (
    ACTIVE_STATES,
    Job,
    JobState,
)
from hathd.engine.config import EngineConfig
from hathd.engine.coordinator import Coordinator
from hathd.engine.lanes import LaneSettings, LaneTable
from hathd.engine.progress import ProgressThrottle
from hathd.engine.records import (
    POSITION_GAP,
    QUEUE_PAUSE_FLAG,
    USER,
    ActiveJob,
    KindEntry,
    free_bytes,
)
from hathd.engine.retry import BUILTIN_PRESETS, RetryPreset
from hathd.engine.states import FINAL_STATES, JobEvent, next_state
from hathd.engine.txbatch import TransitionBatcher
from hathd.errors import (
    JobNotFound,
)
from hathd.events import EventBus
from hathd.store import Store

log = logging.getLogger(__name__)


class EngineShell:
    """The state and the shared effects of :class:`~hathd.engine.core.Engine` (its base)."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        config: EngineConfig,
        *,
        tmp_root: Path,
        download_root: Path,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
        disk_free: Callable[[Path], int] | None = None,
    ) -> None:
        self.store = store
        self._tx = TransitionBatcher(store)
        self.bus = bus
        self.config = config
        self.tmp_root = tmp_root
        self.download_root = download_root
        self.disk_free: Callable[[Path], int] = disk_free or free_bytes
        self._rng = rng or random.Random()
        self._wall = wall
        self._kinds: dict[str, KindEntry] = {}
        self._added_presets: dict[str, RetryPreset] = {}
        self._declared_lanes: dict[str, LaneSettings] = {}
        self._presets = self._build_presets()
        self._table = self._build_table()
        self._coord = self._new_coordinator()
        self._jobs: dict[str, ActiveJob] = {}
        self._timers: list[tuple[float, str]] = []
        self._final_events: dict[str, trio.Event] = {}
        self._orphans: set[ActiveJob] = set()
        self._kick = trio.Event()
        self._waiter_kick = trio.Event()
        self._next_position = POSITION_GAP
        self._serving = False
        self._drain_event: trio.Event | None = None
        self.stopping: trio.Event | None = None
        """Set by the daemon when shutdown begins: the engine then starts no new job."""
        self.submit_observers: list[Callable[[list[Job]], None]] = []
        """Called with the jobs each submission created, on the submitting task (so they see
        its context variables: the web audit trail notes who submitted them); must not
        raise or block."""
        self._started = 0
        self._finished = 0
        self._nursery: trio.Nursery | None = None
        self._worker_recv: trio.MemoryReceiveChannel[ActiveJob] | None = None
        self._worker_count = 0
        self._disk_kick = trio.Event()
        self._disk_full_at: float | None = None
        self._final_pending: dict[str, trio.Event] = {}
        self.last_free_bytes: int | None = None
        """Free bytes under the download root at the last check (``None``: not read yet)."""

    def _build_presets(self) -> dict[str, RetryPreset]:
        # as at start-up: built-in, then [engine.retry], then the presets added in code
        presets = dict(BUILTIN_PRESETS)
        for name, preset in self.config.retry.items():
            presets[name] = RetryPreset(
                delays=tuple(preset.delays),
                jitter=preset.jitter,
                final_wait=preset.effective_final_wait(),
            )
        presets.update(self._added_presets)
        return presets

    def _build_table(self) -> LaneTable:
        # as at start-up: [engine.lanes], then the lanes declared in code that it does not name
        table = LaneTable()
        for pattern, lane in self.config.lanes.items():
            table.set(pattern, LaneSettings(lane.concurrency, lane.rate, lane.burst))
        for pattern, settings in self._declared_lanes.items():
            if pattern not in self.config.lanes:
                table.set(pattern, settings)
        return table

    def _new_coordinator(self) -> Coordinator:
        return Coordinator(
            self._table,
            global_concurrency=self.config.workers,
            global_rate=self.config.global_lane.rate,
            global_burst=self.config.global_lane.burst,
            now=trio.current_time(),
        )

    def _publish(self, job: Job, type_: str | None = None) -> None:
        ref = self._jobs.get(job.id)
        if ref is not None and ref.progress is not None and job.progress is None:
            job = attrs.evolve(job, progress=ref.progress)
        self.bus.publish("jobs", type_ or str(job.state), jobstore.job_to_json(job))

    def _progress(
        self, ref: ActiveJob, job: Job, done: int, total: int | None, message: str | None
    ) -> None:
        if ref.throttle is None:
            ref.throttle = ProgressThrottle()
        progress = ref.throttle.update(done, total, trio.current_time(), message=message)
        if progress is None:
            return
        ref.progress = progress
        data = {"id": job.id, "kind": job.kind, "domain": job.domain, "target": job.target}
        data.update(jobstore.progress_to_json(progress))
        self.bus.publish("progress", "progress", data)

    def _enqueue(self, ref: ActiveJob) -> None:
        """Hand a ``queued`` job to the coordinator (its state is already ``queued``)."""
        self._coord.add(ref.id, ref.domain, ref.priority, ref.position, now=trio.current_time())
        self._kick.set()

    def _enqueue_if_queued(self, ref: ActiveJob) -> None:
        # after an awaited write: another request may have moved the job on meanwhile
        if self._jobs.get(ref.id) is ref and ref.state is JobState.QUEUED:
            self._enqueue(ref)

    async def _resync(self, job_id: str) -> None:
        """Rebuild the in-memory record of ``job_id`` from its stored row."""
        job = await self.store.read(lambda c: jobstore.get_job(c, job_id))
        self._jobs.pop(job_id, None)
        if job is None or job.state not in ACTIVE_STATES:
            return
        ref = ActiveJob(job)
        if job.state is JobState.RUNNING:
            # no worker runs it: queue it again
            changed = await self._write(
                lambda conn: jobstore.transition(
                    conn,
                    job_id,
                    (JobState.RUNNING,),
                    self._row_change(JobState.RUNNING, JobEvent.REQUEUE),
                )
            )
            if changed is None:
                return
            ref = ActiveJob(changed)
        self._jobs[job_id] = ref
        if ref.state is JobState.QUEUED:
            self._enqueue(ref)
        elif ref.state is JobState.WAITING:
            self._add_timer(ref, ref.not_before or self._wall())

    def _add_timer(self, ref: ActiveJob, not_before: float) -> None:
        """Start the retry timer of a ``waiting`` job (its state is already ``waiting``)."""
        ref.not_before = not_before
        heapq.heappush(self._timers, (not_before, ref.id))
        self._waiter_kick.set()

    async def _write[T](self, fn: Callable[[Any], T]) -> T:
        return await self.store.write(fn)

    def _finalised(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        event = self._final_events.pop(job.id, None)
        if event is not None:
            event.set()

    def _preset_for(self, job: Job) -> RetryPreset:
        name = job.retry_preset
        if name is None:
            kind = self._kinds.get(job.kind)
            name = kind.retry_preset if kind else None
        if name is None:
            name = self.config.retry_preset
        preset = self._presets.get(name)
        if preset is None:
            log.warning("job %s: unknown retry preset %r, using 'default'", job.id, name)
            preset = self._presets["default"]
        return preset

    def _with_progress(self, job: Job | None) -> Job | None:
        if job is None:
            return None
        ref = self._jobs.get(job.id)
        if ref is not None and ref.progress is not None:
            return attrs.evolve(job, progress=ref.progress)
        return job

    async def get(self, job_id: str) -> Job | None:
        """The job with ``job_id`` (with live progress if running), or ``None``."""
        return self._with_progress(await self.store.read(lambda c: jobstore.get_job(c, job_id)))

    async def _require(self, job_id: str) -> Job:
        job = await self.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        return job

    def _release(self, ref: ActiveJob) -> None:
        self._coord.release(ref.domain, now=trio.current_time())
        self._kick.set()
        if self._drain_event is not None:
            self._drain_event.set()

    async def _final_hook(self, job: Job) -> None:
        """Run the kind's ``on_final`` for a job that has just reached a final state (always
        after :meth:`_move_state` returned it), then release a waiting :meth:`retry_job`."""
        try:
            kind = self._kinds.get(job.kind)
            if kind is None or kind.on_final is None:
                return
            try:
                await kind.on_final(job)
            except Exception:
                log.exception("engine: final hook of job %s (%s) failed", job.id, job.kind)
        finally:
            self._hook_done(job.id)

    def _hook_done(self, job_id: str) -> None:
        pending = self._final_pending.pop(job_id, None)
        if pending is not None:
            pending.set()

    async def pause_queue(self, *, by: str = USER) -> None:
        """Stop starting jobs (running jobs go on).

        ``by`` keeps the user's pause apart from the daemon's own (``"disk"``, ``"shutdown"``):
        resuming one reason leaves the others. Force-priority jobs (>= 900) still start while
        the user's pause is the only one. The user's pause survives a restart.
        """
        self._coord.pause(by)
        if by == USER:
            await self._write(lambda conn: jobstore.set_flag(conn, QUEUE_PAUSE_FLAG, "1"))
        self.bus.publish("jobs", "queue", {"paused": sorted(self._coord.paused)})

    async def resume_queue(self, *, by: str = USER) -> None:
        """Lift the queue pause of ``by`` only."""
        if by == USER:
            await self._write(lambda conn: jobstore.set_flag(conn, QUEUE_PAUSE_FLAG, None))
        self._coord.resume(by, now=trio.current_time())
        self._kick.set()
        self.bus.publish("jobs", "queue", {"paused": sorted(self._coord.paused)})

    @property
    def queue_paused(self) -> frozenset[str]:
        """The reasons the queue is paused for (empty: running)."""
        return self._coord.paused

    # -- state changes (the only writers of a job's state) ---------------------------------

    def _set_state(
        self, ref: ActiveJob, event: JobEvent, source: JobState | None = None
    ) -> JobState:
        """Apply ``event`` to the in-memory record (from ``source``, default its state).

        :raises InvalidTransition: the table has no such transition.
        """
        ref.state = next_state(ref.state if source is None else source, event)
        return ref.state

    def _row_change(
        self, source: JobState, event: JobEvent, changes: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The column changes of a stored transition from ``source`` on ``event``: the new
        ``state``, ``updated_at`` (now; ``changes`` may override it) and ``changes``.

        :raises InvalidTransition: the table has no such transition.
        """
        return {"state": next_state(source, event), "updated_at": self._wall(), **(changes or {})}

    async def _move_state(
        self,
        ref: ActiveJob,
        event: JobEvent,
        changes: dict[str, Any] | None = None,
        *,
        source: JobState | None = None,
    ) -> Job | None:
        """Apply ``event`` to ``ref`` from ``source`` (default its in-memory state): memory at
        once, then the row, conditional on its state being ``source``; publish the job.

        Returns the stored job, or ``None`` when the row had moved on meanwhile. Reaching a
        final state sets ``finished_at`` and arms the final-hook barrier of :meth:`retry_job`.

        :raises InvalidTransition: the table has no such transition.
        """
        expect = ref.state if source is None else source
        target = next_state(expect, event)
        now = self._wall()
        ref.state = target
        changes = {"state": target, "updated_at": now, **(changes or {})}
        if target in FINAL_STATES:
            changes["finished_at"] = now
            # set by _final_hook: a retry waits for the hook of the try that just ended
            self._final_pending[ref.id] = trio.Event()
        try:
            job = await self._tx.transition(ref.id, (expect,), changes)
        except BaseException:
            self._hook_done(ref.id)
            raise
        if job is None:
            self._hook_done(ref.id)
            return None
        if target in FINAL_STATES:
            self._finalised(job)
            self._finished += 1
        self._publish(job)
        return job
