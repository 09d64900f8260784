"""The engine in-process on a real SQLite store: lifecycle, retries, pauses, moves, restarts."""

from __future__ import annotations

import sqlite3
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import trio

from hathd.engine import JobConflict, JobNotFound
from hathd.engine.api import JobContext, JobSpec, JobState
from hathd.engine.config import RetryPresetConfig
from hathd.errors import PermanentError, RateLimitedError, RetryableError


async def collect(sub: Any, seconds: float, stop: Any = None) -> list[Any]:
    """Events of ``sub`` for up to ``seconds`` (or until ``stop(events)``)."""
    out: list[Any] = []
    async with aclosing(aiter(sub)) as it:
        with trio.move_on_after(seconds):
            async for ev in it:
                out.append(ev)
                if stop is not None and stop(out):
                    break
    return out


def spec(kind: str = "noop", target: str = "t", domain: str = "example.org", **kw: Any) -> JobSpec:
    return JobSpec(kind=kind, target=target, domain=domain, **kw)


async def noop(ctx: JobContext) -> dict[str, Any]:
    await trio.lowlevel.checkpoint()
    return {"target": ctx.job.target}


async def test_jobs_run_to_done_with_result_and_events(make_engine: Any) -> None:
    async with make_engine() as (rt, engine):
        engine.register("noop", noop)
        async with rt.bus.subscribe(["jobs"], buffer=1000) as sub:
            subs = await engine.submit_many(
                [spec(target=f"t{i}", domain=f"d{i % 3}") for i in range(30)]
            )
            assert all(s.created and s.job.state == JobState.QUEUED for s in subs)
            for s in subs:
                job = await engine.wait_final(s.job.id, timeout=20)
                assert job.state == JobState.DONE
                assert job.result == {"target": job.target}
                assert job.attempts == 1
                assert job.finished_at is not None
            events = await collect(sub, 0.5, lambda evs: len(evs) == 90)
        seen: dict[str, list[str]] = {}
        for ev in events:
            seen.setdefault(ev.data["id"], []).append(ev.type)
            assert ev.data["target"].startswith("t")  # full payload, not only an id
        assert all(v == ["queued", "running", "done"] for v in seen.values()), seen


async def test_submit_is_durable_before_it_returns(make_engine: Any, tmp_path: Path) -> None:
    async with make_engine() as (rt, engine):
        await engine.pause_queue()
        engine.register("noop", noop)
        sub = await engine.submit(spec())
        conn = sqlite3.connect(rt.paths.database)
        row = conn.execute("SELECT state FROM engine_jobs WHERE id = ?", (sub.job.id,)).fetchone()
        conn.close()
        assert row == ("queued",)


async def test_dedupe_key_returns_the_active_job(make_engine: Any) -> None:
    async with make_engine() as (_rt, engine):
        await engine.pause_queue()
        engine.register("noop", noop)
        first = await engine.submit(spec(dedupe_key="abc"))
        again = await engine.submit(spec(target="other", dedupe_key="abc"))
        assert first.created
        assert not again.created
        assert again.job.id == first.job.id
        found = await engine.find_active("noop", "abc")
        assert found is not None
        assert found.id == first.job.id
        await engine.cancel_job(first.job.id)
        third = await engine.submit(spec(dedupe_key="abc"))
        assert third.created
        assert third.job.id != first.job.id


async def test_bad_submissions_name_the_field(make_engine: Any) -> None:
    async with make_engine() as (_rt, engine):
        engine.register("noop", noop)
        with pytest.raises(ValueError, match=r"^kind:"):
            await engine.submit(spec(kind="nope"))
        with pytest.raises(ValueError, match=r"^domain:"):
            await engine.submit(spec(domain=""))
        with pytest.raises(ValueError, match="params:"):
            await engine.submit(spec(params={"x": object()}))
        with pytest.raises(ValueError, match=r"^\[1\]\.target:"):
            await engine.submit_many([spec(), spec(target="")])
        jobs, total = await engine.list_jobs()
        assert total == 0
        assert jobs == []


async def test_retryable_then_success_and_permanent_failure(make_engine: Any) -> None:
    calls: dict[str, int] = {}

    async def flaky(ctx: JobContext) -> dict[str, Any]:
        calls[ctx.job.target] = calls.get(ctx.job.target, 0) + 1
        if ctx.job.target == "permanent":
            raise PermanentError("story does not exist")
        if calls[ctx.job.target] < 3:
            raise RetryableError("network down")
        return {"tries": calls[ctx.job.target]}

    async with make_engine() as (_rt, engine):
        engine.register("flaky", flaky)
        ok = await engine.submit(spec("flaky", "ok"))
        bad = await engine.submit(spec("flaky", "permanent"))
        job = await engine.wait_final(ok.job.id, timeout=20)
        assert job.state == JobState.DONE
        assert job.attempts == 3
        assert job.result == {"tries": 3}
        job = await engine.wait_final(bad.job.id, timeout=20)
        assert job.state == JobState.FAILED
        assert job.attempts == 1
        assert job.error_class == "permanent"
        assert "does not exist" in (job.error or "")


async def test_retries_exhaust_after_final_try(make_engine: Any) -> None:
    async def always(ctx: JobContext) -> None:
        raise RuntimeError("boom")

    async with make_engine() as (rt, engine):
        engine.register("always", always)
        async with rt.bus.subscribe(["jobs"], buffer=1000) as sub:
            sub_job = await engine.submit(spec("always"))
            job = await engine.wait_final(sub_job.job.id, timeout=20)
            types = [ev.type for ev in await collect(sub, 0.2)]
        # FAST_RETRY: two delays then one final try → 4 attempts in all
        assert job.state == JobState.FAILED
        assert job.attempts == 4
        assert job.error_class == "retryable"
        assert "boom" in (job.error or "")
        assert types.count("waiting") == 3
        assert types[-1] == "failed"


async def test_preset_without_final_try_fails_when_the_delays_are_spent(make_engine: Any) -> None:
    async def always(ctx: JobContext) -> None:
        raise RuntimeError("boom")

    no_final = RetryPresetConfig(delays=[0.05, 0.05], jitter=0.0, final_wait=0.1, final_try=False)
    async with make_engine(retry={"quick": no_final}) as (_rt, engine):
        engine.register("always", always, retry_preset="quick")
        sub_job = await engine.submit(spec("always"))
        job = await engine.wait_final(sub_job.job.id, timeout=20)
    assert job.state == JobState.FAILED
    assert job.attempts == 3  # the first try and two retries, no final one


async def test_timeout_counts_as_retryable(make_engine: Any) -> None:
    async def slow(ctx: JobContext) -> None:
        await trio.sleep(30)

    async with make_engine() as (_rt, engine):
        engine.register("slow", slow)
        sub = await engine.submit(spec("slow", timeout=0.05, retry_preset="fanfic"))
        with trio.fail_after(10):
            while (job := await engine.get(sub.job.id)) is not None and job.state != "waiting":
                await trio.sleep(0.02)
        assert job is not None
        assert job.error_class == "timeout"
        assert job.not_before is not None
        # fanfic preset: 1 minute ±50 % after the first failure
        assert 29 <= job.not_before - job.updated_at <= 91


async def test_rate_limited_honours_retry_after_and_blocks_the_lane(make_engine: Any) -> None:
    started: list[float] = []

    async def limited(ctx: JobContext) -> None:
        started.append(trio.current_time())
        if len(started) == 1:
            raise RateLimitedError("429", retry_after=0.6)

    async with make_engine() as (_rt, engine):
        engine.register("limited", limited)
        a = await engine.submit(spec("limited", "a"))
        job = await engine.wait_final(a.job.id, timeout=20)
        assert job.state == JobState.DONE
        assert job.attempts == 2
        assert started[1] - started[0] >= 0.55
        stats = engine.statistics()
        assert stats.finished == 1


async def test_unexpected_exception_group_is_contained(make_engine: Any) -> None:
    async def grouped(ctx: JobContext) -> None:
        async with trio.open_nursery() as n:
            n.start_soon(_raise, PermanentError("bad input"))

    async with make_engine() as (_rt, engine):
        engine.register("grouped", grouped)
        sub = await engine.submit(spec("grouped"))
        job = await engine.wait_final(sub.job.id, timeout=20)
        assert job.state == JobState.FAILED
        assert job.error_class == "permanent"


async def _raise(exc: BaseException) -> None:
    await trio.lowlevel.checkpoint()
    raise exc


async def test_pause_resume_cancel_a_running_job(make_engine: Any) -> None:
    gate = trio.Event()
    runs: list[int] = []

    async def blocking(ctx: JobContext) -> dict[str, Any]:
        runs.append(ctx.job.attempts)
        if len(runs) == 1:
            await trio.sleep_forever()
        await gate.wait()
        return {}

    async with make_engine() as (_rt, engine):
        engine.register("blocking", blocking)
        sub = await engine.submit(spec("blocking"))
        with trio.fail_after(10):
            while not runs:
                await trio.sleep(0.01)
        job = await engine.pause_job(sub.job.id)
        assert job.state == JobState.PAUSED
        assert job.paused_by == "user"
        job = await engine.resume_job(sub.job.id)
        assert job.state in (JobState.QUEUED, JobState.RUNNING)
        with trio.fail_after(10):
            while len(runs) < 2:
                await trio.sleep(0.01)
        job = await engine.cancel_job(sub.job.id)
        assert job.state == JobState.CANCELLED
        with pytest.raises(JobConflict):
            await engine.pause_job(sub.job.id)
        job = await engine.retry_job(sub.job.id)
        assert job.state == JobState.QUEUED
        assert job.attempts == 0
        gate.set()
        job = await engine.wait_final(sub.job.id, timeout=20)
        assert job.state == JobState.DONE


async def test_queue_pause_keeps_user_and_daemon_reasons_apart(make_engine: Any) -> None:
    ran: list[str] = []

    async def record(ctx: JobContext) -> None:
        ran.append(ctx.job.target)

    async with make_engine() as (_rt, engine):
        engine.register("rec", record)
        await engine.pause_queue()  # user
        await engine.pause_queue(by="disk")
        normal = await engine.submit(spec("rec", "normal"))
        forced = await engine.submit(spec("rec", "forced", priority=900))
        job = await engine.wait_final(forced.job.id, timeout=20)
        assert job.state == JobState.DONE
        await engine.resume_queue()  # the user's pause only
        assert engine.queue_paused == {"disk"}
        await trio.sleep(0.2)
        assert ran == ["forced"]
        await engine.resume_queue(by="disk")
        job = await engine.wait_final(normal.job.id, timeout=20)
        assert job.state == JobState.DONE
        assert ran == ["forced", "normal"]


async def test_priority_then_position_and_moves(make_engine: Any) -> None:
    ran: list[str] = []

    async def record(ctx: JobContext) -> None:
        ran.append(ctx.job.target)

    async with make_engine(workers=1) as (_rt, engine):
        engine.register("rec", record)
        await engine.pause_queue()
        ids = {}
        for name, prio in [("a", 0), ("b", 0), ("c", 0), ("d", 5), ("e", 0)]:
            ids[name] = (
                await engine.submit(spec("rec", name, f"{name}.example", priority=prio))
            ).job.id
        moved = await engine.move_job(ids["e"], position=0)
        # e cannot pass d (higher priority): it lands first of its band, place 1
        assert moved == {"id": ids["e"], "priority": 0, "position": 1}
        moved = await engine.move_job(ids["a"], how="end")
        assert moved["position"] == 4
        moved = await engine.move_job(ids["c"], position=-1, how="cur")
        assert moved["position"] == 2
        moved = await engine.move_job(ids["b"], priority=10)
        assert moved["position"] == 0
        with pytest.raises(JobNotFound):
            await engine.move_job("nope", position=0)
        await engine.resume_queue()
        last = await engine.wait_final(ids["a"], timeout=20)
        assert last.state == JobState.DONE
        for name in "bcde":
            await engine.wait_final(ids[name], timeout=20)
        assert ran == ["b", "d", "e", "c", "a"]


async def test_moves_renumber_when_positions_are_exhausted(make_engine: Any) -> None:
    async with make_engine(workers=1) as (_rt, engine):
        engine.register("noop", noop)
        await engine.pause_queue()
        ids = [(await engine.submit(spec(target=str(i)))).job.id for i in range(4)]
        # repeatedly insert the last job between the first two: positions halve each time
        for _ in range(15):
            await engine.move_job(ids[3], position=1)
            await engine.move_job(ids[2], position=1)
        jobs, _total = await engine.list_jobs(states=["queued"])
        positions = [j.position for j in jobs]
        assert len(set(positions)) == 4
        assert next(j.id for j in jobs) == ids[0]


async def test_delete_and_clear_history(make_engine: Any) -> None:
    async with make_engine() as (_rt, engine):
        engine.register("noop", noop)
        subs = await engine.submit_many([spec(target=str(i)) for i in range(3)])
        for s in subs:
            await engine.wait_final(s.job.id, timeout=20)
        assert await engine.remove_job(subs[0].job.id) == {"id": subs[0].job.id, "removed": True}
        assert await engine.get(subs[0].job.id) is None
        with pytest.raises(ValueError, match="state"):
            await engine.clear_history(["queued"])
        assert await engine.clear_history(["done"]) == 2
        _jobs, total = await engine.list_jobs()
        assert total == 0


async def test_shutdown_requeues_running_jobs_and_restart_resumes(make_engine: Any) -> None:
    started = trio.Event()

    async def hang(ctx: JobContext) -> None:
        started.set()
        await trio.sleep_forever()

    async def quick(ctx: JobContext) -> None:
        await trio.lowlevel.checkpoint()

    async def fail_once(ctx: JobContext) -> None:
        raise RetryableError("later")

    async with make_engine() as (_rt, engine):
        engine.register("hang", hang)
        engine.register("later", fail_once, retry_preset="slow")
        from hathd.engine.retry import RetryPreset

        engine.add_retry_preset("slow", RetryPreset(delays=(3600.0,), jitter=0.0))
        running = await engine.submit(spec("hang"))
        waiting = await engine.submit(spec("later", domain="other.org", retry_preset="slow"))
        with trio.fail_after(10):
            await started.wait()
            while (w := await engine.get(waiting.job.id)) is not None and w.state != "waiting":
                await trio.sleep(0.01)
        assert w is not None
        assert w.not_before is not None
        not_before = w.not_before
    # after the engine stopped, the running job is queued again, durably
    async with make_engine() as (_rt, engine):
        job = await engine.get(running.job.id)
        assert job is not None
        assert job.state == JobState.QUEUED
        job = await engine.get(waiting.job.id)
        assert job is not None
        assert job.state == JobState.WAITING
        assert job.not_before == not_before
        engine.register("hang", quick)
        done = await engine.wait_final(running.job.id, timeout=20)
        assert done.state == JobState.DONE
        assert done.attempts == 2
        job = await engine.get(waiting.job.id)
        assert job is not None
        assert job.state == JobState.WAITING


async def test_crash_leaves_running_rows_that_recovery_requeues(
    make_engine: Any, tmp_path: Path
) -> None:
    async with make_engine() as (_rt, engine):
        engine.register("noop", noop)
        await engine.pause_queue()
        sub = await engine.submit(spec())
    # simulate a SIGKILL mid-run: the row says running
    conn = sqlite3.connect(tmp_path / "state" / "hathd.sqlite3")
    conn.execute("UPDATE engine_jobs SET state = 'running' WHERE id = ?", (sub.job.id,))
    conn.commit()
    conn.close()
    async with make_engine() as (_rt, engine):
        assert engine.queue_paused == {"user"}  # the user's pause survives a restart
        engine.register("noop", noop)
        await engine.resume_queue()
        job = await engine.wait_final(sub.job.id, timeout=20)
        assert job.state == JobState.DONE


async def test_progress_is_throttled_and_carries_rate(make_engine: Any) -> None:
    async def reporter(ctx: JobContext) -> None:
        for i in range(1001):
            ctx.progress(i, 1000)
            if i % 100 == 0:
                await trio.sleep(0.01)

    async with make_engine() as (rt, engine):
        engine.register("rep", reporter)
        async with rt.bus.subscribe(["progress"], buffer=1000) as sub:
            s = await engine.submit(spec("rep"))
            await engine.wait_final(s.job.id, timeout=20)
            events = [ev.data for ev in await collect(sub, 0.2)]
        assert 10 <= len(events) <= 102  # >= 1 % steps only, not 1001 reports
        assert events[-1]["done"] == 1000
        assert events[-1]["total"] == 1000
        assert events[-1]["id"] == s.job.id
        assert events[-1]["rate"] > 0


async def test_tmp_dir_is_private_and_removed(make_engine: Any) -> None:
    seen: list[Path] = []

    async def uses_tmp(ctx: JobContext) -> None:
        (ctx.tmp_dir / "f").write_text("x")
        seen.append(ctx.tmp_dir)

    async with make_engine() as (_rt, engine):
        engine.register("tmp", uses_tmp)
        s = await engine.submit(spec("tmp"))
        await engine.wait_final(s.job.id, timeout=20)
        assert seen
        assert not seen[0].exists()


async def test_final_hook_runs_once(make_engine: Any) -> None:
    finals: list[str] = []

    async def on_final(job: Any) -> None:
        finals.append(f"{job.target}:{job.state}")

    async def maybe(ctx: JobContext) -> None:
        if ctx.job.target == "bad":
            raise PermanentError("no")

    async with make_engine() as (_rt, engine):
        engine.register("m", maybe, on_final=on_final)
        a = await engine.submit(spec("m", "good"))
        b = await engine.submit(spec("m", "bad"))
        await engine.wait_final(a.job.id, timeout=20)
        await engine.wait_final(b.job.id, timeout=20)
        with trio.fail_after(5):
            while len(finals) < 2:
                await trio.sleep(0.01)
        assert sorted(finals) == ["bad:failed", "good:done"]


async def test_lane_concurrency_limits_one_domain_not_others(make_engine: Any) -> None:
    active: dict[str, int] = {}
    peak: dict[str, int] = {}

    async def track(ctx: JobContext) -> None:
        d = ctx.job.domain
        active[d] = active.get(d, 0) + 1
        peak[d] = max(peak.get(d, 0), active[d])
        await trio.sleep(0.02)
        active[d] -= 1

    async with make_engine(workers=8, lanes={"*.wide": {"concurrency": 3}}) as (_rt, engine):
        engine.register("t", track)
        subs = await engine.submit_many(
            [spec("t", str(i), "a.wide" if i % 2 else "narrow") for i in range(24)]
        )
        for s in subs:
            await engine.wait_final(s.job.id, timeout=30)
        assert peak["narrow"] == 1
        assert 2 <= peak["a.wide"] <= 3


async def test_running_engine_lets_body_errors_through_unwrapped(make_engine: Any) -> None:
    with pytest.raises(KeyError, match="body"):
        async with make_engine() as (_rt, _engine):
            raise KeyError("body")


async def test_daemon_stopping_starts_no_new_jobs(make_engine: Any) -> None:
    ran: list[str] = []

    async def record(ctx: JobContext) -> None:
        ran.append(ctx.job.target)

    async with make_engine() as (rt, engine):
        engine.register("rec", record)
        rt.stopping.set()
        with trio.fail_after(10):
            while "shutdown" not in engine.queue_paused:
                await trio.sleep(0.01)
        sub = await engine.submit(spec("rec"))
        await trio.sleep(0.2)
        assert ran == []
        job = await engine.get(sub.job.id)
        assert job is not None
        assert job.state == JobState.QUEUED
        stats = engine.statistics()
        assert stats.queued == 1
        assert stats.queue_paused == ("shutdown",)


async def test_drain_waits_for_running_jobs_up_to_the_grace(make_engine: Any) -> None:
    release = trio.Event()
    started: list[str] = []

    async def gated(ctx: JobContext) -> None:
        started.append(ctx.job.target)
        if ctx.job.target == "hang":
            await trio.sleep_forever()
        await release.wait()

    async with make_engine() as (_rt, engine):
        engine.register("g", gated)
        await engine.submit(spec("g", "quick", "a.org"))
        await engine.submit(spec("g", "hang", "b.org"))
        with trio.fail_after(10):
            while len(started) < 2:
                await trio.sleep(0.01)
        release.set()
        assert await engine.drain(0.5) == 1  # "quick" finished, "hang" is still running
        assert engine.queue_paused == {"shutdown"}
