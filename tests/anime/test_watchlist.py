"""The watchlist schedule: pure next-run rules, and the loop on a fake clock."""

from __future__ import annotations

import datetime as dt

import trio
import trio.testing

from hathd.anime.watchlist import Schedule, Scheduler, next_run


def _local(h: int, m: int) -> float:
    return dt.datetime(2026, 3, 10, h, m).astimezone().timestamp()


def test_interval() -> None:
    s = Schedule(interval=3600)
    assert next_run(s, None, 1000.0) == 1000.0
    assert next_run(s, 1000.0, 1500.0) == 4600.0
    assert next_run(s, 1000.0, 9000.0) == 9000.0
    assert next_run(Schedule(), 1000.0, 9000.0) is None


def test_time_of_day() -> None:
    s = Schedule(interval=60, at="04:30")
    now = _local(3, 0)
    assert next_run(s, None, now) == _local(4, 30)
    assert next_run(s, _local(2, 0), now) == _local(4, 30)
    # ran yesterday before 04:30 today: due once 04:30 passed
    assert next_run(s, _local(4, 29), _local(5, 0)) == _local(5, 0)
    assert next_run(s, _local(4, 31), _local(5, 0)) == _local(4, 30) + 86400


async def test_scheduler_runs_on_the_interval_and_on_trigger(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs: list[float] = []
    t0 = 1_000_000.0

    def clock() -> float:
        return t0 + trio.current_time()

    async def check() -> None:
        runs.append(clock() - t0)
        if len(runs) == 2:
            raise RuntimeError("provider down")

    errors: list[BaseException] = []
    sched = Scheduler(check, Schedule(interval=600), clock=clock, on_error=errors.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(sched.run)
        await trio.sleep(1300)
        assert [round(r) for r in runs] == [0, 600, 1200]
        assert len(errors) == 1
        sched.trigger()
        await trio.sleep(1)
        assert round(runs[-1]) == 1300
        sched.reschedule(Schedule(interval=0))
        await trio.sleep(5000)
        assert len(runs) == 4
        nursery.cancel_scope.cancel()
