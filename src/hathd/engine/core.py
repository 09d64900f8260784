"""The engine: the Trio shell around the coordinator, the waiter and the worker pool.

Modules: :mod:`hathd.engine.states` (the job state machine, sans-IO: the one transition
table), :mod:`hathd.engine.shell` (the state kept in memory and the effects of a change),
:mod:`hathd.engine.control` (the user's job operations), :mod:`hathd.engine.runner`
(dispatcher, workers, waiter, disk watcher), :mod:`hathd.engine.records` (in-memory records),
:mod:`hathd.engine.validate` (input checks) and this module, the façade: registration,
submission, queries and statistics.

How a state change is applied (memory, then the row, then the ``jobs`` room) is described in
:mod:`hathd.engine.shell`; the tasks under :meth:`Engine.serve` in :mod:`hathd.engine.runner`.

Shutdown: cancelling :meth:`Engine.serve` cancels running handlers; each worker writes its job
back to ``queued`` in a shielded scope before the cancellation goes on.

Disk space: while there is work, a watcher reads the free space under the download root every
``disk_check_interval`` seconds and pauses the queue (reason ``"disk"``) below
``min_free_bytes``, resuming it above. A handler that fails with ``ENOSPC``/``EDQUOT`` pauses the
queue the same way and its job goes back to ``queued`` without consuming an attempt (at most
``DISK_FULL_FREE_TRIES`` times per job; later tries count, so a quota the free-space check
cannot see ends in ``failed`` instead of looping).

Rate limits: a try that ends rate-limited blocks its lane for the Retry-After time and waits at
least that long; the first ``RATE_LIMITED_FREE_TRIES`` such tries of a job do not count as
attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import trio

from hathd.engine import jobstore
from hathd.engine.api import (
    ACTIVE_STATES,
    FinalHook,
    Handler,
    InvalidInput,
    Job,
    JobSpec,
    JobState,
    Submitted,
)
from hathd.engine.config import EngineConfig
from hathd.engine.control import JobControl
from hathd.engine.coordinator import CoordinatorStatistics
from hathd.engine.lanes import LaneSettings
from hathd.engine.records import (
    DISK_FULL_FREE_TRIES,
    POSITION_GAP,
    RATE_LIMITED_FREE_TRIES,
    ActiveJob,
    EngineStatistics,
    KindEntry,
    new_id,
)
from hathd.engine.retry import RetryPreset
from hathd.engine.runner import Runner
from hathd.engine.states import FINAL_STATES, INITIAL_STATE
from hathd.engine.validate import (
    as_invalid,
    check_json_object,
    check_priority,
    check_timeout,
    validate_spec,
)
from hathd.errors import (
    JobConflict,
    JobNotFound,
)

log = logging.getLogger(__name__)

__all__ = [
    "DISK_FULL_FREE_TRIES",
    "RATE_LIMITED_FREE_TRIES",
    "Engine",
    "EngineStatistics",
    "InvalidInput",
    "JobConflict",
    "JobNotFound",
    "check_priority",
    "check_timeout",
    "validate_spec",
]


class Engine(JobControl, Runner):
    """The job engine; implements :class:`~hathd.engine.api.EngineAPI`.

    :param store: the open store (``engine`` migrations already applied, see
        :func:`hathd.engine.jobstore.SCHEMA`).
    :param bus: where ``jobs`` and ``progress`` events go.
    :param config: ``[engine]``.
    :param tmp_root: parent of the per-try temporary directories.
    :param download_root: the folder ``download`` jobs may write under (its free space is
        watched, see ``min_free_bytes``).
    :param rng: jitter source (seed it in tests).
    :param wall: the wall clock (seconds since the epoch) of ``not_before`` and timestamps.
    :param disk_free: ``disk_free(path)`` → bytes available to us on the file system of
        ``path`` (default :func:`shutil.disk_usage` ``.free``); called in a worker thread. Tests
        may replace the attribute of the same name at any time.
    """

    def register(
        self,
        kind: str,
        handler: Handler,
        *,
        retry_preset: str | None = None,
        on_final: FinalHook | None = None,
        validate: Callable[[JobSpec], None] | None = None,
    ) -> None:
        """Register the handler of ``kind``; ``on_final`` runs after ``done``/``failed``/
        ``cancelled``; ``validate(spec)`` checks a submission (raises ``ValueError`` naming
        the field) before anything is stored.

        :raises ValueError: ``kind`` already has a handler.
        """
        if kind in self._kinds:
            raise ValueError(f"kind {kind!r} already has a handler")
        self._kinds[kind] = KindEntry(handler, retry_preset, on_final, validate)
        for ref in [r for r in self._orphans if r.kind == kind]:
            self._orphans.discard(ref)
            if self._jobs.get(ref.id) is ref and ref.state is JobState.QUEUED:
                self._enqueue(ref)
        self._kick.set()

    def kinds(self) -> list[str]:
        """The registered job kinds."""
        return sorted(self._kinds)

    def add_retry_preset(self, name: str, preset: RetryPreset) -> None:
        """Declare (or replace) a backoff preset usable by kinds and jobs (kept across
        :meth:`reconfigure`)."""
        self._added_presets[name] = preset
        self._presets[name] = preset

    def retry_presets(self) -> dict[str, RetryPreset]:
        """Every known preset by name."""
        return dict(self._presets)

    def add_lane(
        self, pattern: str, *, concurrency: int = 1, rate: float = 0.0, burst: int = 1
    ) -> None:
        """Declare politeness for domains matching ``pattern`` (fnmatch); ``rate`` in jobs/s,
        0 meaning unlimited. A configured ``[engine.lanes]`` entry for the same pattern wins
        (also after a :meth:`reconfigure` that adds or drops it).

        :raises ValueError: ``concurrency < 1``, ``rate < 0`` or ``burst < 1``.
        """
        if concurrency < 1 or rate < 0 or burst < 1:
            raise ValueError("lane: concurrency >= 1, rate >= 0 and burst >= 1 required")
        settings = LaneSettings(concurrency, rate, burst)
        self._declared_lanes[pattern] = settings
        if pattern in self.config.lanes:
            return
        self._coord.set_lane(pattern, settings, now=trio.current_time())
        self._kick.set()

    def reconfigure(self, config: EngineConfig) -> None:
        """Apply a reloaded ``[engine]`` section to the running engine (call it on the Trio
        thread; it does not block and takes effect at once).

        - lanes: every lane is re-seeded from ``config.lanes`` plus the lanes declared with
          :meth:`add_lane` (a configured pattern wins); running and queued jobs, rate-limit
          blocks and backoffs are kept; a lane whose rate or burst changed starts with a full
          bucket. A raised concurrency lets more jobs start at once; a lowered one lets no new
          job start until the lane is under it (running jobs go on).
        - ``workers`` (more worker tasks are started when it grows), ``global_lane``.
        - retry presets (``config.retry`` over the built-in ones, then those added with
          :meth:`add_retry_preset`) and ``retry_preset``: used from the next failure on.
        - ``job_timeout``: for tries that start from now on (a running try keeps its deadline).
        - ``min_free_bytes``, ``disk_check_interval``: free space is checked again at once.

        ``download_root`` is not changed (a warning is logged): it takes effect on restart.
        """
        now = trio.current_time()
        if config.download_root != self.config.download_root:
            log.warning("engine: download_root changes take effect after a restart")
        self.config = config
        self._presets = self._build_presets()
        self._table = self._build_table()
        self._coord.set_table(self._table, now=now)
        self._coord.set_global(
            concurrency=config.workers,
            rate=config.global_lane.rate,
            burst=config.global_lane.burst,
            now=now,
        )
        self._start_workers(config.workers)
        self._kick.set()
        self._disk_kick.set()
        log.info(
            "engine: configuration applied (%d workers, %d lane patterns, job_timeout %g s)",
            config.workers,
            len(self._table.patterns()),
            config.job_timeout,
        )

    async def submit(self, spec: JobSpec) -> Submitted:
        """Store a job durably (committed before this returns) and queue it.

        :raises InvalidInput: (a ``ValueError``) an invalid field, named in ``field`` and the
            message, or an unregistered kind.
        """
        return (await self.submit_many([spec]))[0]

    async def submit_many(self, specs: Sequence[JobSpec]) -> list[Submitted]:
        """Store several jobs in one transaction; de-duplicated by ``(kind, dedupe_key)``.

        :raises InvalidInput: an invalid field or an unregistered kind (nothing is stored); in
            a batch of several the field is prefixed with the index (``[2].target``).
        """
        now = self._wall()
        jobs: list[Job] = []
        for index, spec in enumerate(specs):
            prefix = f"[{index}]." if len(specs) > 1 else ""
            try:
                validate_spec(spec)
                kind = self._kinds.get(spec.kind)
                if kind is None:
                    raise InvalidInput("kind", f"no handler registered for {spec.kind!r}")
                if kind.validate is not None:
                    kind.validate(spec)
                if spec.retry_preset is not None and spec.retry_preset not in self._presets:
                    raise InvalidInput("retry_preset", f"unknown preset {spec.retry_preset!r}")
            except ValueError as exc:
                raise as_invalid(exc, prefix) from None
            self._next_position += POSITION_GAP
            jobs.append(
                Job(
                    id=new_id(),
                    kind=spec.kind,
                    target=spec.target,
                    domain=spec.domain.lower(),
                    state=INITIAL_STATE,
                    priority=spec.priority,
                    position=self._next_position,
                    source=spec.source,
                    source_id=spec.source_id,
                    dedupe_key=spec.dedupe_key,
                    params=dict(spec.params),
                    retry_preset=spec.retry_preset,
                    timeout=spec.timeout,
                    created_at=now,
                    updated_at=now,
                )
            )
        if not jobs:
            return []
        stored = await self._write(lambda conn: jobstore.insert_jobs(conn, jobs))
        out: list[Submitted] = []
        for job, created in stored:
            if created and job.id not in self._jobs:
                ref = ActiveJob(job)
                self._jobs[job.id] = ref
                self._enqueue(ref)
                self._publish(job)
            out.append(Submitted(job, created))
        fresh = [s.job for s in out if s.created]
        for observer in self.submit_observers if fresh else ():
            try:
                observer(fresh)
            except Exception:
                log.exception("a submit observer failed")
        return out

    async def find_active(self, kind: str, dedupe_key: str) -> Job | None:
        """The active job (queued, running, waiting, paused) of ``kind`` with ``dedupe_key``."""
        return await self.store.read(lambda c: jobstore.find_active(c, kind, dedupe_key))

    async def list_jobs(
        self,
        *,
        states: Sequence[str] = (),
        kind: str | None = None,
        domain: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Job], int]:
        """A page of jobs (active first in queue order, then history newest first) and the
        total matching."""
        jobs, total = await self.store.read(
            lambda c: jobstore.list_jobs(
                c, states=states, kind=kind, domain=domain, limit=limit, offset=offset
            )
        )
        return [j for j in (self._with_progress(j) for j in jobs) if j is not None], total

    async def wait_final(self, job_id: str, timeout: float = 60.0) -> Job:
        """Wait until ``job_id`` is ``done``, ``failed`` or ``cancelled``; return it.

        :raises JobNotFound: no such job.
        :raises trio.TooSlowError: not final within ``timeout`` seconds.
        """
        with trio.fail_after(timeout):
            while True:
                event = self._final_events.setdefault(job_id, trio.Event())
                job = await self.get(job_id)
                if job is None:
                    raise JobNotFound(job_id)
                if job.state in FINAL_STATES:
                    return job
                await event.wait()

    async def save_checkpoint(self, job_id: str, data: dict[str, Any] | None) -> None:
        """Persist a running job's handler state for its later tries (``Job.checkpoint``);
        committed before this returns. ``None`` clears it. A retry of a finished job starts
        with no checkpoint.

        :raises InvalidInput: ``data`` is not a strict-JSON object (field ``checkpoint``).
        """
        if data is not None:
            if not isinstance(data, dict):
                raise InvalidInput("checkpoint", "must be a JSON object")
            check_json_object(data, "checkpoint")
        await self._write(lambda conn: jobstore.set_checkpoint(conn, job_id, data))

    def statistics(self) -> EngineStatistics:
        """Counts for the status API (``ServiceSpec.statistics``)."""
        counts = dict.fromkeys(ACTIVE_STATES, 0)
        for ref in self._jobs.values():
            if ref.state in counts:  # a job finishing is dropped from _jobs after its write
                counts[ref.state] += 1
        coord: CoordinatorStatistics = self._coord.statistics()
        return EngineStatistics(
            queued=counts[JobState.QUEUED],
            running=counts[JobState.RUNNING],
            waiting=counts[JobState.WAITING],
            paused=counts[JobState.PAUSED],
            workers=self.config.workers,
            queue_paused=coord.paused,
            lanes_known=coord.lanes,
            lanes=tuple(self._coord.lanes(trio.current_time(), limit=20)),
            started=self._started,
            finished=self._finished,
        )
