"""The engine's in-memory records: an active job, a registered kind, a handler's context,
the statistics, and the small helpers that read exceptions and the disk.

Nothing here changes a job's state: :mod:`hathd.engine.states` says which changes exist and
the engine's shell (:mod:`hathd.engine.shell`) applies them.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from hathd.engine.api import FinalHook, Handler, Job, JobSpec, Progress
from hathd.engine.coordinator import LaneStatistics
from hathd.engine.progress import ProgressThrottle

if TYPE_CHECKING:
    from hathd.engine.shell import EngineShell

POSITION_GAP = 1024
"""Positions are spaced so that a move rarely renumbers its neighbours."""
POSITION_LIMIT = 1_000_000_000
"""Largest place (``set``) or offset (``cur``) a move accepts."""
USER = "user"
DISK = "disk"
QUEUE_PAUSE_FLAG = "queue_paused_by_user"
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
RATE_LIMITED_FREE_TRIES = 5
"""Tries of one job that may end rate-limited (HTTP 429/503 with Retry-After, …) without
counting as attempts: the site asked us to slow down, the job is not at fault. Later ones
count, so a site that never lets us in still ends the job."""
DISK_FULL_FREE_TRIES = 3
"""Tries of one job that may end on a full disk without counting as attempts; later ones
count (a quota that the free-space check cannot see would otherwise loop for ever)."""


class ActiveJob:
    """The in-memory record of an active job (queued, running, waiting, paused).

    ``state`` mirrors the stored row's state; it changes only through
    :func:`hathd.engine.states.next_state` (see :meth:`EngineShell._set_state`).
    """

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
class KindEntry:
    """A registered job kind: its handler, retry preset, final hook and validator."""

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


class HandlerContext:
    """The :class:`~hathd.engine.api.JobContext` given to a handler."""

    def __init__(self, engine: EngineShell, ref: ActiveJob, job: Job) -> None:
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


def stop_requested(ref: ActiveJob) -> bool:
    """True once a user's pause or cancel asked the running try of ``ref`` to stop."""
    return ref.stop_action is not None


def new_id() -> str:
    """A new job id: 16 lower-case hex digits, 64 random bits (``api.JOB_ID_RE``)."""
    return os.urandom(8).hex()


def free_bytes(path: Path) -> int:
    """Bytes available to us on the file system of ``path`` (blocking: call it in a thread)."""
    return shutil.disk_usage(path).free


def disk_full(exc: BaseException) -> bool:
    """True when ``exc`` (a leaf of a group, or an explicit ``__cause__``) is an ``OSError``
    with ``ENOSPC`` or ``EDQUOT``."""
    stack = [exc]
    seen: set[int] = set()
    while stack:
        err = stack.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            return True
        if isinstance(err, BaseExceptionGroup):
            stack.extend(err.exceptions)
        if err.__cause__ is not None:
            stack.append(err.__cause__)
    return False
