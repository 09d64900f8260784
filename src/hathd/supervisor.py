"""The supervisor: runs each service, restarts a crashed one with backoff, records the crash.

A service is ``async def serve(*, task_status=trio.TASK_STATUS_IGNORED) -> None`` that calls
``task_status.started()`` once it is really ready. :meth:`Supervisor.start` returns once the
service has started *or* has crashed for the first time, so one broken ingester never holds the
daemon back from READY=1; the crash shows in ``statistics()`` and on the ``system`` room.

Errors are contained here: a service's exception (an ExceptionGroup from its own nursery
included) is logged, counted and followed by a restart after ``backoff`` seconds (doubling from
``backoff_min`` to ``backoff_max``, reset after the service has run for ``stable_after``).
Cancellation is never caught.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from functools import partial
from typing import Any, Protocol

import attrs
import trio

from hathd.events import EventBus
from hathd.excgroups import describe, single

log = logging.getLogger(__name__)


class ServeFn(Protocol):
    """The shape of a service entry point."""

    def __call__(self, *, task_status: trio.TaskStatus[Any] = ...) -> Awaitable[None]: ...


class ServiceState(StrEnum):
    """The life of a supervised service."""

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPED = "stopped"


@attrs.define
class ServiceSpec:
    """A service to supervise.

    ``statistics`` returns the service's own counters (an attrs instance or a mapping) for the
    status API.
    """

    name: str
    serve: ServeFn
    statistics: Callable[[], Any] | None = None


@attrs.define
class ServiceRecord:
    """What the supervisor knows of one service."""

    spec: ServiceSpec
    state: ServiceState = ServiceState.STARTING
    restarts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    started_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data (statistics included, unstructured)."""
        stats: Any = None
        if self.spec.statistics is not None:
            try:
                stats = to_plain(self.spec.statistics())
            except Exception as exc:
                stats = {"error": f"{type(exc).__name__}: {exc}"}
        return {
            "name": self.spec.name,
            "state": str(self.state),
            "restarts": self.restarts,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "started_at": self.started_at,
            "statistics": stats,
        }


def to_plain(value: Any) -> Any:
    """``value`` as JSON-ready data: attrs instances and named tuples become mappings."""
    if attrs.has(type(value)):
        return {k: to_plain(v) for k, v in attrs.asdict(value, recurse=False).items()}
    if hasattr(value, "_asdict"):
        return {k: to_plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def describe_error(exc: BaseException) -> str:
    """A one-line description of ``exc``; an ExceptionGroup is reduced to its leaf errors
    (:func:`hathd.excgroups.describe`)."""
    return describe(exc)


class Supervisor:
    """Starts services in a nursery it is given and keeps them running."""

    def __init__(
        self,
        bus: EventBus,
        *,
        backoff_min: float = 0.5,
        backoff_max: float = 60.0,
        stable_after: float = 60.0,
    ) -> None:
        self.bus = bus
        self.records: dict[str, ServiceRecord] = {}
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._stable_after = stable_after

    async def start(
        self, nursery: trio.Nursery, spec: ServiceSpec, *, fail_fast: bool = False
    ) -> None:
        """Run ``spec`` under supervision in ``nursery``; return once it started or first crashed.

        With ``fail_fast`` a crash before the first ``started()`` is raised here instead of
        being restarted (for services the daemon cannot run without, like the admin socket).

        :raises ValueError: a service of that name is already supervised.
        """
        if spec.name in self.records:
            raise ValueError(f"service {spec.name!r} already supervised")
        record = ServiceRecord(spec)
        self.records[spec.name] = record
        try:
            await nursery.start(partial(self._supervise, record, fail_fast=fail_fast))
        except BaseException:
            if fail_fast:
                del self.records[spec.name]
            raise

    def _set_state(self, record: ServiceRecord, state: ServiceState) -> None:
        record.state = state
        self.bus.publish("system", "service", record.to_json())

    async def _supervise(
        self,
        record: ServiceRecord,
        *,
        fail_fast: bool = False,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        reported = False
        backoff = self._backoff_min
        while True:
            began = trio.current_time()
            try:
                async with trio.open_nursery() as inner:
                    await inner.start(_call_serve, record.spec.serve)
                    record.started_at = time.time()
                    self._set_state(record, ServiceState.RUNNING)
                    if not reported:
                        task_status.started()
                        reported = True
            except Exception as exc:
                if fail_fast and not reported:
                    raise single(exc) from None
                record.restarts += 1
                record.last_error = describe_error(exc)
                record.last_error_at = time.time()
                if trio.current_time() - began >= self._stable_after:
                    backoff = self._backoff_min  # it ran long enough: a fresh crash
                log.error(
                    "service %s crashed (restart %d in %.1f s): %s",
                    record.spec.name,
                    record.restarts,
                    backoff,
                    record.last_error,
                    exc_info=exc,
                )
                self._set_state(record, ServiceState.RESTARTING)
                if not reported:
                    task_status.started()
                    reported = True
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff_max)
                continue
            self._set_state(record, ServiceState.STOPPED)
            if not reported:
                task_status.started()
            return

    def statistics(self) -> list[dict[str, Any]]:
        """Every service's record as JSON-ready data, in start order."""
        return [r.to_json() for r in self.records.values()]

    def all_healthy(self) -> bool:
        """True when no service is waiting to be restarted."""
        return all(r.state is not ServiceState.RESTARTING for r in self.records.values())


async def _call_serve(
    serve: ServeFn, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
) -> None:
    await serve(task_status=task_status)
