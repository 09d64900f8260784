"""The supervisor: readiness, restarts with backoff, crash records, fail-fast (no real I/O)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import trio
import trio.testing

from hathd.events import EventBus
from hathd.supervisor import ServiceSpec, ServiceState, Supervisor


async def test_crashing_service_is_restarted_with_growing_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus = EventBus()
    sup = Supervisor(bus, backoff_min=1.0, backoff_max=4.0)
    starts: list[float] = []

    async def flaky(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        starts.append(trio.current_time())
        task_status.started()
        if len(starts) <= 4:
            raise RuntimeError(f"boom {len(starts)}")
        await trio.sleep_forever()

    async with bus.subscribe(["system"]) as sub, trio.open_nursery() as nursery:
        await sup.start(nursery, ServiceSpec("flaky", flaky, statistics=lambda: {"n": 1}))
        await trio.sleep(30)
        record = sup.records["flaky"]
        assert record.restarts == 4
        assert record.last_error == "RuntimeError: boom 4"
        assert record.state is ServiceState.RUNNING
        gaps = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
        assert gaps == [1.0, 2.0, 4.0, 4.0]
        status = sup.statistics()[0]
        assert status["statistics"] == {"n": 1}
        assert status["restarts"] == 4
        nursery.cancel_scope.cancel()
        states = []
        while True:
            try:
                event = sub._recv.receive_nowait()
            except trio.WouldBlock:
                break
            states.append(event.data["state"])
        assert states == ["running", "restarting"] * 4 + ["running"]


async def test_crash_before_ready_does_not_block_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor(EventBus(), backoff_min=10.0)

    async def broken(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        raise OSError("cannot bind")

    async with trio.open_nursery() as nursery:
        await sup.start(nursery, ServiceSpec("broken", broken))
        record = sup.records["broken"]
        assert record.state is ServiceState.RESTARTING
        assert record.last_error == "OSError: cannot bind"
        assert not sup.all_healthy()
        nursery.cancel_scope.cancel()


async def test_fail_fast_raises_the_first_error() -> None:
    sup = Supervisor(EventBus())

    async def broken(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        raise OSError("address in use")

    async with trio.open_nursery() as nursery:
        with pytest.raises(OSError, match="address in use"):
            await sup.start(nursery, ServiceSpec("admin", broken), fail_fast=True)
    assert "admin" not in sup.records


async def test_exception_group_from_service_is_contained(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup = Supervisor(EventBus(), backoff_min=5.0)

    async def grouped(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

        async def fail(msg: str) -> None:
            raise ValueError(msg)

        async with trio.open_nursery() as inner:
            inner.start_soon(fail, "a")
            inner.start_soon(fail, "b")

    async with trio.open_nursery() as nursery:
        await sup.start(nursery, ServiceSpec("grouped", grouped))
        await trio.sleep(1)
        record = sup.records["grouped"]
        assert record.restarts == 1
        assert record.last_error is not None
        assert "ValueError: a" in record.last_error
        assert "ValueError: b" in record.last_error
        nursery.cancel_scope.cancel()


async def test_service_that_returns_is_stopped() -> None:
    sup = Supervisor(EventBus())

    async def once(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async with trio.open_nursery() as nursery:
        await sup.start(nursery, ServiceSpec("once", once))
    assert sup.records["once"].state is ServiceState.STOPPED
    async with trio.open_nursery() as nursery:
        with pytest.raises(ValueError, match="already supervised"):
            await sup.start(nursery, ServiceSpec("once", once))
