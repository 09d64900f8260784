"""The engine: the Trio shell around the coordinator, the waiter and the worker pool.

State lives in two places kept in step: the ``engine_jobs`` table (the truth; every transition
is written through the store's group commit and acknowledged only once committed) and a small
in-memory record per *active* job (queued, running, waiting, paused) that drives dispatch. A
state change is decided in memory first (so concurrent requests see it at once), then written
(conditional on the expected stored state), then published on the ``jobs`` room with the full
job.

Tasks under :meth:`Engine.serve` (one nursery): the dispatcher (asks the sans-IO
:class:`~hathd.engine.coordinator.Coordinator` for the next admissible job and hands it to a
worker over an unbuffered memory channel), ``workers`` workers (each with its own clone of the
receive channel) and the waiter (a heap of ``(not_before, job)`` on the wall clock; due jobs go
back to ``queued``).

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

import errno
import heapq
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from hathd.engine import jobstore
from hathd.engine.api import (
    ACTIVE_STATES,
    PRIORITY_MAX,
    PRIORITY_MIN,
    FinalHook,
    Handler,
    InvalidInput,
    Job,
    JobSpec,
    JobState,
    Progress,
    Submitted,
)
from hathd.engine.config import EngineConfig
from hathd.engine.coordinator import Coordinator, CoordinatorStatistics, LaneStatistics
from hathd.engine.lanes import LaneSettings, LaneTable
from hathd.engine.progress import ProgressThrottle
from hathd.engine.retry import BUILTIN_PRESETS, RetryPreset, classify, decide
from hathd.errors import (
    HathdError,
    JobConflict,
    JobNotFound,
    PermanentError,
    RetryableError,
    StoreError,
)
from hathd.events import EventBus
from hathd.store import Store

log = logging.getLogger(__name__)

FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})
POSITION_GAP = 1024
"""Positions are spaced so that a move rarely renumbers its neighbours."""
POSITION_LIMIT = 1_000_000_000
"""Largest place (``set``) or offset (``cur``) a move accepts."""
USER = "user"
DISK = "disk"
_QUEUE_PAUSE_FLAG = "queue_paused_by_user"
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
RATE_LIMITED_FREE_TRIES = 5
"""Tries of one job that may end rate-limited (HTTP 429/503 with Retry-After, …) without
counting as attempts: the site asked us to slow down, the job is not at fault. Later ones
count, so a site that never lets us in still ends the job."""
DISK_FULL_FREE_TRIES = 3
"""Tries of one job that may end on a full disk without counting as attempts; later ones
count (a quota that the free-space check cannot see would otherwise loop for ever)."""


class _Ref:
    """The in-memory record of an active job."""

    __slots__ = (
        "disk_full_tries",
        "domain",
        "id",
        "kind",
        "not_before",
        "pause_reason",
        "position",
        "priority",
        "progress",
        "rate_limited_tries",
        "scope",
        "settled",
        "state",
        "stop_action",
        "throttle",
    )

    def __init__(self, job: Job) -> None:
        self.id = job.id
        self.kind = job.kind
        self.domain = job.domain
        self.priority = job.priority
        self.position = job.position
        self.state = job.state
        self.not_before = job.not_before
        self.scope: trio.CancelScope | None = None
        self.stop_action: str | None = None
        self.pause_reason: str = USER
        self.progress: Progress | None = None
        self.throttle: ProgressThrottle | None = None
        self.settled: trio.Event | None = None
        self.disk_full_tries = 0
        """Tries of this job (in this run) that ended on a full disk and were not counted."""
        self.rate_limited_tries = 0
        """Tries of this job (in this run) the site refused as rate-limited, not counted."""


@attrs.define
class _Kind:
    handler: Handler
    retry_preset: str | None
    on_final: FinalHook | None
    validate: Callable[[JobSpec], None] | None = None


@attrs.frozen
class EngineStatistics:
    """Active jobs by state, workers, queue pause reasons, lanes (busiest first)."""

    queued: int
    running: int
    waiting: int
    paused: int
    workers: int
    queue_paused: tuple[str, ...]
    lanes_known: int
    lanes: tuple[LaneStatistics, ...]
    started: int
    finished: int


class _Context:
    """The :class:`~hathd.engine.api.JobContext` given to a handler."""

    def __init__(self, engine: Engine, ref: _Ref, job: Job) -> None:
        self._engine = engine
        self._ref = ref
        self._job = job
        self._tmp: Path | None = None

    @property
    def job(self) -> Job:
        return self._job

    @property
    def tmp_dir(self) -> Path:
        if self._tmp is None:
            path = self._engine.tmp_root / f"job-{self._job.id}-{self._job.attempts}"
            path.mkdir(parents=True, exist_ok=True)
            self._tmp = path
        return self._tmp

    def progress(self, done: int, total: int | None = None, *, message: str | None = None) -> None:
        self._engine._progress(self._ref, self._job, done, total, message)

    def cleanup(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _stop_requested(ref: _Ref) -> bool:
    return ref.stop_action is not None


def _new_id() -> str:
    # the shape of hathd.engine.api.JOB_ID_RE: 16 lower-case hex digits
    return os.urandom(8).hex()


def _disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def _is_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_cancelled(e) for e in exc.exceptions)
    return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _disk_full(exc: BaseException) -> bool:
    """True when ``exc`` (a leaf of a group, or an explicit ``__cause__``) is an ``OSError``
    with ``ENOSPC`` or ``EDQUOT``."""
    stack = [exc]
    seen: set[int] = set()
    while stack:
        err = stack.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _DISK_FULL_ERRNOS:
            return True
        if isinstance(err, BaseExceptionGroup):
            stack.extend(err.exceptions)
        if err.__cause__ is not None:
            stack.append(err.__cause__)
    return False


def check_priority(value: object, field: str = "priority") -> int:
    """``value`` as a priority: an integer in ``PRIORITY_MIN..PRIORITY_MAX`` (±10⁹).

    :raises InvalidInput: naming ``field``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be an integer, got {value!r}")
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise InvalidInput(field, f"must be between {PRIORITY_MIN} and {PRIORITY_MAX}")
    return value


def check_timeout(value: object, field: str = "timeout") -> float:
    """``value`` as a job timeout: a finite number of seconds > 0 (an integer too large for a
    float is refused, not raised as ``OverflowError``).

    :raises InvalidInput: naming ``field``.
    """
    problem = InvalidInput(field, "must be a finite number of seconds > 0")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise problem
    try:
        seconds = float(value)
    except OverflowError:
        raise problem from None
    if not math.isfinite(seconds) or not seconds > 0:
        raise problem
    return seconds


def _json_object_check(value: object, field: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInput(field, f"not JSON-serialisable: {exc}") from None


def validate_spec(spec: JobSpec) -> None:
    """Check a submission's shape.

    :raises InvalidInput: naming the field (``kind``, ``target``, ``domain``, ``priority``
        (an integer within ±10⁹), ``timeout`` (finite seconds > 0), ``params`` (strict JSON:
        no NaN or infinity)).
    """
    if not isinstance(spec.kind, str) or not spec.kind:
        raise InvalidInput("kind", "must be a non-empty string")
    if not isinstance(spec.target, str) or not spec.target:
        raise InvalidInput("target", "must be a non-empty string")
    if not isinstance(spec.domain, str) or not spec.domain:
        raise InvalidInput("domain", "must be a non-empty string")
    check_priority(spec.priority)
    if spec.timeout is not None:
        check_timeout(spec.timeout)
    if not isinstance(spec.params, dict):
        raise InvalidInput("params", "must be a JSON object")
    _json_object_check(spec.params, "params")


def _as_invalid(exc: ValueError, prefix: str) -> InvalidInput:
    """A validator's ``ValueError`` as :class:`InvalidInput`, its field prefixed (``[2].``).
    A plain ``ValueError`` names its field as ``"field: message"``; else ``params`` is blamed."""
    if isinstance(exc, InvalidInput):
        return InvalidInput(prefix + exc.field, exc.message)
    text = str(exc)
    head, sep, rest = text.partition(":")
    head = head.strip()
    if sep and head and " " not in head:
        return InvalidInput(prefix + head, rest.strip())
    return InvalidInput(prefix + "params", text)


class Engine:
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
        self.bus = bus
        self.config = config
        self.tmp_root = tmp_root
        self.download_root = download_root
        self.disk_free: Callable[[Path], int] = disk_free or _disk_free
        self._rng = rng or random.Random()
        self._wall = wall
        self._kinds: dict[str, _Kind] = {}
        self._added_presets: dict[str, RetryPreset] = {}
        self._declared_lanes: dict[str, LaneSettings] = {}
        self._presets = self._build_presets()
        self._table = self._build_table()
        self._coord = self._new_coordinator()
        self._jobs: dict[str, _Ref] = {}
        self._timers: list[tuple[float, str]] = []
        self._final_events: dict[str, trio.Event] = {}
        self._orphans: set[_Ref] = set()
        self._kick = trio.Event()
        self._waiter_kick = trio.Event()
        self._next_position = POSITION_GAP
        self._serving = False
        self._drain_event: trio.Event | None = None
        self.stopping: trio.Event | None = None
        """Set by the daemon when shutdown begins: the engine then starts no new job."""
        self._started = 0
        self._finished = 0
        self._nursery: trio.Nursery | None = None
        self._worker_recv: trio.MemoryReceiveChannel[_Ref] | None = None
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

    # -- registration ----------------------------------------------------------------------

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
        self._kinds[kind] = _Kind(handler, retry_preset, on_final, validate)
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

    def _start_workers(self, count: int) -> None:
        # worker tasks are only ever added: surplus ones stay idle (the coordinator admits at
        # most ``workers`` jobs at once)
        if self._nursery is None or self._worker_recv is None:
            return
        while self._worker_count < count:
            self._nursery.start_soon(self._worker, self._worker_recv.clone())
            self._worker_count += 1

    # -- helpers ---------------------------------------------------------------------------

    def _publish(self, job: Job, type_: str | None = None) -> None:
        ref = self._jobs.get(job.id)
        if ref is not None and ref.progress is not None and job.progress is None:
            job = attrs.evolve(job, progress=ref.progress)
        self.bus.publish("jobs", type_ or str(job.state), jobstore.job_to_json(job))

    def _progress(
        self, ref: _Ref, job: Job, done: int, total: int | None, message: str | None
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

    def _enqueue(self, ref: _Ref) -> None:
        ref.state = JobState.QUEUED
        self._coord.add(ref.id, ref.domain, ref.priority, ref.position, now=trio.current_time())
        self._kick.set()

    def _enqueue_if_queued(self, ref: _Ref) -> None:
        # after an awaited write: another request may have moved the job on meanwhile
        if self._jobs.get(ref.id) is ref and ref.state is JobState.QUEUED:
            self._enqueue(ref)

    async def _resync(self, job_id: str) -> None:
        """Rebuild the in-memory record of ``job_id`` from its stored row."""
        job = await self.store.read(lambda c: jobstore.get_job(c, job_id))
        self._jobs.pop(job_id, None)
        if job is None or job.state not in ACTIVE_STATES:
            return
        ref = _Ref(job)
        if job.state is JobState.RUNNING:
            # no worker runs it: queue it again
            changed = await self._write(
                lambda conn: jobstore.transition(
                    conn,
                    job_id,
                    (JobState.RUNNING,),
                    {"state": JobState.QUEUED, "updated_at": self._wall()},
                )
            )
            if changed is None:
                return
            ref = _Ref(changed)
        self._jobs[job_id] = ref
        if ref.state is JobState.QUEUED:
            self._enqueue(ref)
        elif ref.state is JobState.WAITING:
            self._add_timer(ref, ref.not_before or self._wall())

    def _add_timer(self, ref: _Ref, not_before: float) -> None:
        ref.state = JobState.WAITING
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

    # -- submission ------------------------------------------------------------------------

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
                raise _as_invalid(exc, prefix) from None
            self._next_position += POSITION_GAP
            jobs.append(
                Job(
                    id=_new_id(),
                    kind=spec.kind,
                    target=spec.target,
                    domain=spec.domain.lower(),
                    state=JobState.QUEUED,
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
                ref = _Ref(job)
                self._jobs[job.id] = ref
                self._enqueue(ref)
                self._publish(job)
            out.append(Submitted(job, created))
        return out

    # -- queries ---------------------------------------------------------------------------

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
            _json_object_check(data, "checkpoint")
        await self._write(lambda conn: jobstore.set_checkpoint(conn, job_id, data))

    async def _require(self, job_id: str) -> Job:
        job = await self.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        return job

    # -- user operations -------------------------------------------------------------------

    async def _settle(self, ref: _Ref, action: str, timeout: float) -> None:
        ref.stop_action = action
        if ref.settled is None:
            ref.settled = trio.Event()
        settled = ref.settled
        if ref.scope is not None:
            ref.scope.cancel()
        with trio.move_on_after(timeout):
            await settled.wait()

    async def _move_state(
        self, ref: _Ref, expect: JobState, target: JobState, changes: dict[str, Any]
    ) -> Job | None:
        now = self._wall()
        ref.state = target
        changes = {"state": target, "updated_at": now, **changes}
        if target in FINAL_STATES:
            changes["finished_at"] = now
            # set by _final_hook: a retry waits for the hook of the try that just ended
            self._final_pending[ref.id] = trio.Event()
        try:
            job = await self._write(
                lambda conn: jobstore.transition(conn, ref.id, (expect,), changes)
            )
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
        if ref.state is JobState.QUEUED:
            self._coord.remove(job_id)
            await self._move_state(ref, JobState.QUEUED, JobState.PAUSED, {"paused_by": by})
        elif ref.state is JobState.WAITING:
            await self._move_state(ref, JobState.WAITING, JobState.PAUSED, {"paused_by": by})
        elif ref.state is JobState.RUNNING:
            await self._settle(ref, "pause", timeout)
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
        if ref.state is JobState.PAUSED:
            ref.state = JobState.QUEUED
            resumed = await self._write(
                lambda conn: jobstore.transition(
                    conn,
                    job_id,
                    (JobState.PAUSED,),
                    {
                        "state": JobState.QUEUED,
                        "paused_by": None,
                        "not_before": None,
                        "updated_at": self._wall(),
                    },
                )
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
            if ref.state is not JobState.WAITING:
                raise JobConflict(f"job {job_id} is {ref.state}; nothing to retry")
            ref.state = JobState.QUEUED
            job = await self._write(
                lambda conn: jobstore.transition(
                    conn,
                    job_id,
                    (JobState.WAITING,),
                    {"state": JobState.QUEUED, "not_before": None, "updated_at": self._wall()},
                )
            )
            if job is not None:
                self._enqueue_if_queued(ref)
                self._publish(job)
            return await self._require(job_id)
        pending = self._final_pending.get(job_id)
        if pending is not None:
            await pending.wait()  # the final hook of the try that ended (e.g. a part file)
        current = await self._require(job_id)
        if current.state not in FINAL_STATES:
            raise JobConflict(f"job {job_id} is {current.state}; nothing to retry")
        changes: dict[str, Any] = {
            "state": JobState.QUEUED,
            "attempts": 0,
            "error": None,
            "error_class": None,
            "result": None,
            "finished_at": None,
            "not_before": None,
            "paused_by": None,
            "checkpoint": None,
            "updated_at": self._wall(),
        }
        try:
            job = await self._write(
                lambda conn: jobstore.transition(conn, job_id, FINAL_STATES, changes)
            )
        except Exception as exc:
            if "UNIQUE" in str(exc):
                raise JobConflict(
                    f"job {job_id}: another active job has dedupe_key {current.dedupe_key!r}"
                ) from None
            raise
        if job is None:
            return await self._require(job_id)
        new_ref = _Ref(job)
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
            expect = ref.state
            if expect is JobState.QUEUED:
                self._coord.remove(job_id)
            cancelled = await self._move_state(ref, expect, JobState.CANCELLED, {"paused_by": None})
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

    def _queue_order(self) -> list[_Ref]:
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

    async def pause_queue(self, *, by: str = USER) -> None:
        """Stop starting jobs (running jobs go on).

        ``by`` keeps the user's pause apart from the daemon's own (``"disk"``, ``"shutdown"``):
        resuming one reason leaves the others. Force-priority jobs (>= 900) still start while
        the user's pause is the only one. The user's pause survives a restart.
        """
        self._coord.pause(by)
        if by == USER:
            await self._write(lambda conn: jobstore.set_flag(conn, _QUEUE_PAUSE_FLAG, "1"))
        self.bus.publish("jobs", "queue", {"paused": sorted(self._coord.paused)})

    async def resume_queue(self, *, by: str = USER) -> None:
        """Lift the queue pause of ``by`` only."""
        if by == USER:
            await self._write(lambda conn: jobstore.set_flag(conn, _QUEUE_PAUSE_FLAG, None))
        self._coord.resume(by, now=trio.current_time())
        self._kick.set()
        self.bus.publish("jobs", "queue", {"paused": sorted(self._coord.paused)})

    @property
    def queue_paused(self) -> frozenset[str]:
        """The reasons the queue is paused for (empty: running)."""
        return self._coord.paused

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

    # -- statistics ------------------------------------------------------------------------

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

    # -- the service -----------------------------------------------------------------------

    async def _recover(self) -> None:
        now = self._wall()

        def run(conn: Any) -> tuple[list[Job], int, int, str | None]:
            jobs, requeued = jobstore.recover(conn, now)
            return (
                jobs,
                requeued,
                jobstore.max_position(conn),
                jobstore.get_flag(conn, _QUEUE_PAUSE_FLAG),
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
            ref = _Ref(job)
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
        send, recv = trio.open_memory_channel[_Ref](0)
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

    async def _dispatcher(self, send: trio.MemorySendChannel[_Ref]) -> None:
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
                    ref.state = JobState.RUNNING
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
            due: list[_Ref] = []
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

    async def _wake(self, refs: list[_Ref]) -> None:
        now = self._wall()
        ids = [r.id for r in refs]
        for ref in refs:
            ref.state = JobState.QUEUED

        def run(conn: Any) -> list[Job]:
            out = []
            for job_id in ids:
                job = jobstore.transition(
                    conn,
                    job_id,
                    (JobState.WAITING,),
                    {"state": JobState.QUEUED, "not_before": None, "updated_at": now},
                )
                if job is not None:
                    out.append(job)
            return out

        jobs = await self._write(run)
        for job in jobs:
            woken = self._jobs.get(job.id)
            if woken is not None and woken.state is JobState.QUEUED:
                self._enqueue(woken)
            self._publish(job)

    async def _worker(self, recv: trio.MemoryReceiveChannel[_Ref]) -> None:
        async with recv:
            async for ref in recv:
                await self._run(ref)

    def _release(self, ref: _Ref) -> None:
        self._coord.release(ref.domain, now=trio.current_time())
        self._kick.set()
        if self._drain_event is not None:
            self._drain_event.set()

    async def _run(self, ref: _Ref) -> None:
        started = self._wall()
        ref.progress = None
        ref.throttle = None
        try:
            job = await self._write(
                lambda conn: jobstore.transition(
                    conn,
                    ref.id,
                    (JobState.QUEUED,),
                    {"state": JobState.RUNNING, "updated_at": started, "not_before": None},
                    bump_attempts=True,
                )
            )
        except StoreError:
            log.exception("engine: cannot start job %s; it stays queued", ref.id)
            self._release(ref)
            # try again later, without spinning on a failing store
            self._coord.rate_limited(ref.domain, 5.0, now=trio.current_time())
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
        ctx = _Context(self, ref, job)
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
                with trio.CancelScope() as scope:
                    ref.scope = scope
                    if _stop_requested(ref):
                        scope.cancel()
                    with trio.fail_after(timeout):
                        result = await kind.handler(ctx)
                stopped = scope.cancelled_caught
        except trio.TooSlowError:
            error = RetryableError(f"timed out after {timeout:g} s")
        except BaseException as exc:
            if _is_cancelled(exc):
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

    async def _requeue(self, ref: _Ref) -> None:
        self._release(ref)
        ref.progress = None
        try:
            job = await self._move_state(ref, JobState.RUNNING, JobState.QUEUED, {})
        except StoreError:
            log.exception("engine: cannot requeue job %s (restart will)", ref.id)
            return
        if job is not None:
            self._enqueue_if_queued(ref)

    async def _stopped(self, ref: _Ref) -> None:
        self._release(ref)
        ref.progress = None
        action = ref.stop_action
        if action == "pause":
            await self._move_state(
                ref, JobState.RUNNING, JobState.PAUSED, {"paused_by": ref.pause_reason}
            )
        elif action == "cancel":
            job = await self._move_state(ref, JobState.RUNNING, JobState.CANCELLED, {})
            if job is not None:
                await self._final_hook(job)
        else:
            job = await self._move_state(ref, JobState.RUNNING, JobState.QUEUED, {})
            if job is not None:
                self._enqueue_if_queued(ref)

    async def _succeeded(self, ref: _Ref, job: Job, result: dict[str, Any] | None) -> None:
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
            JobState.RUNNING,
            JobState.DONE,
            {"result": result, "error": None, "error_class": None},
        )
        if final is not None:
            await self._final_hook(final)

    async def _failed(self, ref: _Ref, job: Job, error: BaseException) -> None:
        self._release(ref)
        ref.progress = None
        ref.throttle = None
        if _disk_full(error):
            if DISK not in self._coord.paused:
                log.warning(
                    "engine: job %s ran out of disk space (%s); queue paused",
                    job.id,
                    _describe(error),
                )
                await self.pause_queue(by=DISK)
            self._disk_full_at = trio.current_time()
            if ref.disk_full_tries < DISK_FULL_FREE_TRIES:
                ref.disk_full_tries += 1
                await self._out_of_space(ref, job, error)
                return
        preset = self._preset_for(job)
        decision = decide(preset, max(1, job.attempts), error, self._rng)
        text = _describe(error)
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
                JobState.RUNNING,
                JobState.FAILED,
                {"error": text, "error_class": error_class},
            )
            if final is not None:
                await self._final_hook(final)
            return
        not_before = self._wall() + decision.delay
        ref.state = JobState.WAITING
        changes = {
            "state": JobState.WAITING,
            "not_before": not_before,
            "attempts": attempts,
            "error": text,
            "error_class": error_class,
            "updated_at": self._wall(),
        }
        waiting = await self._write(
            lambda conn: jobstore.transition(conn, ref.id, (JobState.RUNNING,), changes)
        )
        if waiting is not None:
            if self._jobs.get(ref.id) is ref and ref.state is JobState.WAITING:
                self._add_timer(ref, not_before)
            self._publish(waiting)

    async def _out_of_space(self, ref: _Ref, job: Job, error: BaseException) -> None:
        """The handler ran out of disk space (the queue is already paused, ``"disk"``): queue
        the job again without counting the try; the disk watcher lifts the pause once there
        is room. Past :data:`DISK_FULL_FREE_TRIES` such tries the job fails like any other."""
        text = _describe(error)
        queued = await self._move_state(
            ref,
            JobState.RUNNING,
            JobState.QUEUED,
            {
                "attempts": max(0, job.attempts - 1),
                "error": text,
                "error_class": "disk_full",
            },
        )
        if queued is not None:
            self._enqueue_if_queued(ref)

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
