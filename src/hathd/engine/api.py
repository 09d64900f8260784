"""The job engine's public contract: the job record, submission, handlers and their context.

Pipelines (transfers, fanfiction, uploads, galleries) code against this module only; the
implementation lives in the rest of :mod:`hathd.engine`.

A handler is ``async def handler(ctx: JobContext) -> dict | None``. It returns the job's result
(JSON-ready) or raises one of the classified errors of :mod:`hathd.errors`:
``RetryableError`` (the waiter schedules another try), ``RateLimitedError`` (the same, waiting at
least ``retry_after`` seconds, and the lane slows down) or ``PermanentError`` (the job fails at
once). Any other exception counts as retryable. Cancellation of the handler (shutdown, a user's
pause) puts the job back to ``queued``/``paused``; it is never a failure.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import attrs

from hathd.engine.retry import RetryPreset
from hathd.errors import InvalidInput as InvalidInput


class JobState(StrEnum):
    """``queued`` → ``running`` → ``done``; ``waiting`` (retry timer), ``paused``, ``failed``,
    ``cancelled``."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.RUNNING, JobState.WAITING, JobState.PAUSED})
"""States in which a job still counts for de-duplication."""

PRIORITY_MIN = -1_000_000_000
PRIORITY_MAX = 1_000_000_000
"""Bounds of a job's ``priority`` (inclusive); the force level (900) lies inside."""

JOB_ID_RE = re.compile(r"[0-9a-f]{16}")
"""The shape of a job id the engine generates: 16 lower-case hex digits (64 random bits)."""


def is_job_id(text: str) -> bool:
    """True when ``text`` has the shape of an engine job id (:data:`JOB_ID_RE`)."""
    return JOB_ID_RE.fullmatch(text) is not None


@attrs.frozen
class Progress:
    """Progress of a running job: bytes (or items) done and total, rate (units/s), ETA (s)."""

    done: int = 0
    total: int | None = None
    rate: float | None = None
    eta: float | None = None
    message: str | None = None


@attrs.frozen
class Job:
    """The job record (docs/engine.md); times are seconds since the epoch."""

    id: str
    kind: str
    target: str
    domain: str
    state: JobState
    priority: int = 0
    position: int = 0
    source: str = "api"
    source_id: str | None = None
    dedupe_key: str | None = None
    params: dict[str, Any] = attrs.field(factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    error_class: str | None = None
    attempts: int = 0
    not_before: float | None = None
    retry_preset: str | None = None
    timeout: float | None = None
    paused_by: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None
    checkpoint: dict[str, Any] | None = None
    """Handler state kept between tries (JSON object), e.g. a download's resume validator."""
    progress: Progress | None = None


@attrs.frozen
class JobSpec:
    """What a source submits. ``dedupe_key`` (e.g. a torrent hash, a story URL): while a job
    with the same kind and key is active, submitting again returns that job instead."""

    kind: str
    target: str
    domain: str
    params: dict[str, Any] = attrs.field(factory=dict)
    priority: int = 0
    source: str = "api"
    source_id: str | None = None
    dedupe_key: str | None = None
    retry_preset: str | None = None
    timeout: float | None = None


@attrs.frozen
class Submitted:
    """The outcome of a submission: the job, and whether it was newly created."""

    job: Job
    created: bool


class JobContext(Protocol):
    """What a running handler is given."""

    @property
    def job(self) -> Job:
        """The job being run (its ``attempts`` already counts this try)."""
        ...

    @property
    def tmp_dir(self) -> Path:
        """A private temporary directory for this try, removed when the handler returns."""
        ...

    def progress(self, done: int, total: int | None = None, *, message: str | None = None) -> None:
        """Report progress (bytes or items); throttled to >= 1 % or >= 1 s before publishing."""
        ...


Handler = Callable[[JobContext], Awaitable[dict[str, Any] | None]]
"""A job handler: returns the result mapping or raises a classified error."""

FinalHook = Callable[[Job], Awaitable[None]]
"""Called once a job reaches ``done`` or ``failed`` (e.g. to publish a Q4D label)."""


class EngineAPI(Protocol):
    """What the engine offers the pipelines and the admin API."""

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
        ...

    async def submit(self, spec: JobSpec) -> Submitted:
        """Store a job durably (committed before this returns) and queue it."""
        ...

    async def submit_many(self, specs: Sequence[JobSpec]) -> list[Submitted]:
        """Store several jobs in one transaction."""
        ...

    async def get(self, job_id: str) -> Job | None:
        """The job with ``job_id``, or ``None``."""
        ...

    async def find_active(self, kind: str, dedupe_key: str) -> Job | None:
        """The active job (queued, running, waiting, paused) of ``kind`` with ``dedupe_key``."""
        ...

    def add_lane(
        self, pattern: str, *, concurrency: int = 1, rate: float = 0.0, burst: int = 1
    ) -> None:
        """Declare politeness for domains matching ``pattern`` (fnmatch); ``rate`` in jobs/s,
        0 meaning unlimited."""
        ...

    def add_retry_preset(self, name: str, preset: RetryPreset) -> None:
        """Declare (or replace) the backoff preset ``name`` for kinds and jobs to use."""
        ...
