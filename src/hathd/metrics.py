"""Measured metrics (prometheus-client ``Counter`` and ``Histogram``) that ``/metrics`` exports
beside the statistics it renders on each scrape (:mod:`hathd.admin.metrics`).

One process-wide :data:`REGISTRY` holds:

- ``hathd_hath_request_duration_seconds{route}`` (histogram): one H@H image-server request,
  from its parsed head to its last byte; ``route`` is the first path segment the server
  dispatches on (``h``, ``servercmd``, ``t``) or ``other``.
- ``hathd_hath_sent_bytes_total{route}`` (counter): bytes sent for those requests.
- ``hathd_job_run_seconds{kind,outcome}`` (histogram): one try of a job, from ``running`` to the
  state it left running for (``done``, ``failed``, ``waiting``, ``paused``, ``cancelled``,
  ``queued``).
- ``hathd_job_lane_wait_seconds{kind}`` (histogram): from ``queued`` to ``running``, the time a
  job waited for its lane, a worker or its priority turn.
- ``hathd_jobs_finished_total{kind,state}`` (counter): jobs reaching ``done``, ``failed`` or
  ``cancelled``.

The job metrics come from the event bus (room ``jobs``, one event per transition carrying the
job; :mod:`hathd.events`), read by :class:`JobMetrics`, so the engine itself stays unaware of
them. Times are the events' wall-clock stamps, seconds.
"""

from __future__ import annotations

import logging
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Histogram

from hathd.events import Event, EventBus

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
"""The registry of the measured metrics (rendered by ``/metrics``)."""

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200)
_WAITS = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)

HATH_REQUEST_SECONDS = Histogram(
    "hathd_hath_request_duration_seconds",
    "H@H image-server requests: seconds from the parsed head to the last byte sent",
    ["route"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
HATH_SENT_BYTES = Counter(
    "hathd_hath_sent_bytes",
    "bytes the H@H image server sent in reply to requests",
    ["route"],
    registry=REGISTRY,
)
JOB_RUN_SECONDS = Histogram(
    "hathd_job_run_seconds",
    "seconds one try of a job ran, by kind and the state it ended in",
    ["kind", "outcome"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
JOB_LANE_WAIT_SECONDS = Histogram(
    "hathd_job_lane_wait_seconds",
    "seconds a job waited between queued and running",
    ["kind"],
    buckets=_WAITS,
    registry=REGISTRY,
)
JOBS_FINISHED = Counter(
    "hathd_jobs_finished",
    "jobs that reached done, failed or cancelled",
    ["kind", "state"],
    registry=REGISTRY,
)

HATH_ROUTES = frozenset({"h", "servercmd", "t"})
FINAL_STATES = frozenset({"done", "failed", "cancelled"})


def observe_hath_request(route: str, seconds: float, sent: int) -> None:
    """Record one H@H request: ``route`` (first path segment; others count as ``other``),
    ``seconds`` it took, ``sent`` bytes."""
    label = route if route in HATH_ROUTES else "other"
    HATH_REQUEST_SECONDS.labels(label).observe(max(0.0, seconds))
    HATH_SENT_BYTES.labels(label).inc(max(0, sent))


class JobMetrics:
    """Turns ``jobs`` events into the job metrics; :meth:`serve` is a supervised service.

    Memory: one entry per job between ``queued`` and ``running`` and per running job."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._queued_at: dict[str, float] = {}
        self._running_since: dict[str, tuple[str, float]] = {}
        self.events = 0

    def handle(self, event: Event) -> None:
        """Account one ``jobs`` event (sans-IO: only the event's data and time are read)."""
        data: dict[str, Any] = event.data
        job_id = data.get("id")
        if not isinstance(job_id, str):
            return
        if event.type == "removed":
            self._queued_at.pop(job_id, None)
            self._running_since.pop(job_id, None)
            return
        state, kind = data.get("state"), str(data.get("kind", "?"))
        if event.type != state:  # "moved" and the like: not a transition
            return
        self.events += 1
        started = self._running_since.pop(job_id, None)
        if started is not None and state != "running":
            JOB_RUN_SECONDS.labels(started[0], state).observe(max(0.0, event.time - started[1]))
        if state == "queued":
            self._queued_at[job_id] = event.time
        elif state == "running":
            queued = self._queued_at.pop(job_id, None)
            if queued is not None:
                JOB_LANE_WAIT_SECONDS.labels(kind).observe(max(0.0, event.time - queued))
            self._running_since[job_id] = (kind, event.time)
        else:
            self._queued_at.pop(job_id, None)
        if state in FINAL_STATES:
            JOBS_FINISHED.labels(kind, state).inc()

    def statistics(self) -> dict[str, int]:
        """``events`` accounted, ``tracked`` jobs held in memory."""
        return {"events": self.events, "tracked": len(self._queued_at) + len(self._running_since)}

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the ``jobs`` room until cancelled; after a lag (events lost) subscribe again
        (the jobs whose transitions were lost are then measured from their next ones)."""
        started = False
        while True:
            async with self.bus.subscribe(["jobs"], buffer=4096) as sub:
                if not started:
                    task_status.started()
                    started = True
                async for event in sub:
                    if event.type == "lagged":
                        log.warning("job metrics fell behind the event bus; resubscribing")
                        break
                    self.handle(event)
            await trio.lowlevel.checkpoint()
