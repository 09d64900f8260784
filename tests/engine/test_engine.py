"""The engine in-process on a real SQLite store: lifecycle, retries, pauses, moves, restarts."""

from __future__ import annotations

import errno
import sqlite3
from contextlib import aclosing
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from hathd.engine import JobConflict, JobNotFound
from hathd.engine.api import PRIORITY_MAX, InvalidInput, JobContext, JobSpec, JobState
from hathd.engine.config import LaneConfig, RetryPresetConfig
from hathd.engine.core import DISK_FULL_FREE_TRIES, RATE_LIMITED_FREE_TRIES
from hathd.errors import PermanentError, RateLimitedError, RetryableError, StoreError

SLOW_RETRY = RetryPresetConfig(delays=[3600.0], jitter=0.0, final_wait=None)


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
    started: dict[str, list[float]] = {}
    limited_at: list[float] = []

    async def limited(ctx: JobContext) -> None:
        started.setdefault(ctx.job.target, []).append(trio.current_time())
        if ctx.job.target == "a" and not limited_at:
            limited_at.append(trio.current_time())
            raise RateLimitedError("429", retry_after=0.6)

    async with make_engine() as (_rt, engine):
        engine.register("limited", limited)
        a = await engine.submit(spec("limited", "a"))
        with trio.fail_after(10):
            while (job := await engine.get(a.job.id)) is not None and job.state != "waiting":
                await trio.sleep(0.01)
        # another job of the same domain is held back; another domain is not
        b = await engine.submit(spec("limited", "b"))
        c = await engine.submit(spec("limited", "c", domain="elsewhere.org"))
        job = await engine.wait_final(c.job.id, timeout=20)
        assert job.state == JobState.DONE
        assert started["c"][0] - limited_at[0] < 0.5
        for sub in (a, b):
            job = await engine.wait_final(sub.job.id, timeout=20)
            assert job.state == JobState.DONE
        with trio.fail_after(5):  # counted by the task that wrote the final state
            while engine.statistics().finished != 3:
                await trio.sleep(0.01)
        # the lane is blocked for max(Retry-After 0.6 s, first backoff 1 s)
        assert started["b"][0] - limited_at[0] >= 0.95
        assert started["a"][1] - started["a"][0] >= 0.95
        assert len(started["a"]) == 2


async def test_rate_limited_tries_are_not_counted_up_to_a_cap(make_engine: Any) -> None:
    """A site that answers 429 RATE_LIMITED_FREE_TRIES times does not spend the job's retries
    (a one-retry preset would otherwise fail it); once past the cap the tries count and the
    job fails."""
    tries = 0

    async def always_limited(ctx: JobContext) -> None:
        nonlocal tries
        tries += 1
        raise RateLimitedError("HTTP 429", retry_after=0.01)

    preset = RetryPresetConfig(delays=[0.01], jitter=0.0, final_wait=None)
    async with make_engine(retry={"quick": preset}) as (_rt, engine):
        engine.register("limited", always_limited, retry_preset="quick")
        sub = await engine.submit(spec("limited"))
        job = await engine.wait_final(sub.job.id, timeout=30)
    assert job.state == JobState.FAILED
    assert tries == RATE_LIMITED_FREE_TRIES + 2  # uncounted ones, then two counted tries
    assert job.attempts == 2
    assert job.error_class == "rate_limited"


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
        await trio.sleep(0.2)
        assert ran == []  # force beats the user's pause, never the daemon's (disk full)
        await engine.resume_queue(by="disk")
        assert engine.queue_paused == {"user"}
        job = await engine.wait_final(forced.job.id, timeout=20)
        assert job.state == JobState.DONE
        await trio.sleep(0.2)
        assert ran == ["forced"]
        await engine.resume_queue()  # the user's pause
        job = await engine.wait_final(normal.job.id, timeout=20)
        assert job.state == JobState.DONE
        assert ran == ["forced", "normal"]


async def test_force_priority_starts_no_job_during_shutdown(make_engine: Any) -> None:
    ran: list[str] = []

    async def record(ctx: JobContext) -> None:
        ran.append(ctx.job.target)

    async with make_engine() as (rt, engine):
        engine.register("rec", record)
        await engine.pause_queue()
        rt.stopping.set()
        with trio.fail_after(10):
            while "shutdown" not in engine.queue_paused:
                await trio.sleep(0.01)
        sub = await engine.submit(spec("rec", "forced", priority=900))
        await engine.resume_queue()  # only the user's pause is lifted
        await trio.sleep(0.3)
        assert ran == []
        job = await engine.get(sub.job.id)
        assert job is not None
        assert job.state == JobState.QUEUED


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


async def test_job_dirs_left_by_a_killed_daemon_are_swept_at_start(
    make_engine: Any, tmp_path: Path
) -> None:
    """A per-try directory a SIGKILL left behind (it may hold a password file) is gone once
    the engine is built again; other entries of the temporary folder stay."""
    tmp_root = tmp_path / "state" / "tmp"
    left = tmp_root / "job-0123456789abcdef-1"
    left.mkdir(parents=True)
    (left / "password").write_text("secret")
    other = tmp_root / "keep-me"
    other.mkdir()
    async with make_engine() as (rt, _engine):
        assert rt.paths.tmp == tmp_root
        assert not left.exists()
        assert other.is_dir()


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


async def test_retry_waits_for_the_final_hook_of_the_try_that_ended(make_engine: Any) -> None:
    """A retry that arrives while the final hook (a download deleting its part file) still
    runs starts the new try only after the hook returned, so the two never overlap."""
    hook_entered = trio.Event()
    release = trio.Event()
    events: list[str] = []

    async def on_final(job: Any) -> None:
        events.append(f"hook:{job.state}")
        hook_entered.set()
        await release.wait()
        events.append("hook-end")

    async def fails_first(ctx: JobContext) -> None:
        events.append("try")
        if events.count("try") == 1:
            raise PermanentError("no")

    async with make_engine() as (_rt, engine):
        engine.register("m", fails_first, on_final=on_final)
        sub = await engine.submit(spec("m"))
        with trio.fail_after(10):
            await hook_entered.wait()
        retried: list[Any] = []

        async def retry() -> None:
            retried.append(await engine.retry_job(sub.job.id))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(retry)
            await trio.sleep(0.2)
            assert retried == []  # held back by the running hook
            assert events == ["try", "hook:failed"]
            release.set()
        assert retried[0].state in (JobState.QUEUED, JobState.RUNNING, JobState.DONE)
        await engine.wait_final(sub.job.id, timeout=20)
    assert events[:4] == ["try", "hook:failed", "hook-end", "try"]


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


async def test_reconfigure_applies_lanes_workers_and_timeout_live(make_engine: Any) -> None:
    release = trio.Event()
    running: list[str] = []

    async def gated(ctx: JobContext) -> None:
        running.append(ctx.job.target)
        await release.wait()

    async def slow(ctx: JobContext) -> None:
        await trio.sleep(30)

    async def count_is(n: int) -> None:
        with trio.fail_after(10):
            while len(running) < n:
                await trio.sleep(0.01)
        await trio.sleep(0.2)
        assert len(running) == n

    async with make_engine(workers=2) as (_rt, engine):
        engine.register("g", gated)
        engine.register("slow", slow)
        subs = await engine.submit_many([spec("g", str(i), "busy.org") for i in range(4)])
        await count_is(1)  # the default lane: one job at a time per domain
        engine.reconfigure(
            attrs.evolve(engine.config, lanes={"busy.org": LaneConfig(concurrency=3)})
        )
        await count_is(2)  # the lane admits 3, the pool has 2 workers
        engine.reconfigure(attrs.evolve(engine.config, workers=3))
        await count_is(3)
        stats = engine.statistics()
        assert stats.workers == 3
        assert [(lane.domain, lane.concurrency, lane.running) for lane in stats.lanes] == [
            ("busy.org", 3, 3)
        ]
        release.set()
        for sub in subs:
            assert (await engine.wait_final(sub.job.id, timeout=20)).state == JobState.DONE
        # a lower job_timeout applies to the next try
        engine.reconfigure(
            attrs.evolve(engine.config, job_timeout=0.1, retry={"default": SLOW_RETRY})
        )
        timed = await engine.submit(spec("slow", domain="other.org"))
        with trio.fail_after(10):
            while (job := await engine.get(timed.job.id)) is not None and job.state != "waiting":
                await trio.sleep(0.01)
        assert job is not None
        assert job.error_class == "timeout"
        assert job.not_before is not None
        assert job.not_before - job.updated_at > 3000  # the reloaded preset: 3600 s


async def test_reconfigure_keeps_declared_lanes_unless_configured(make_engine: Any) -> None:
    gate = trio.Event()
    running: list[str] = []

    async def gated(ctx: JobContext) -> None:
        running.append(ctx.job.target)
        await gate.wait()

    async with make_engine(workers=8) as (_rt, engine):
        engine.register("g", gated)
        engine.add_lane("*.site", concurrency=2)
        engine.reconfigure(attrs.evolve(engine.config, lanes={"*.site": LaneConfig(concurrency=1)}))
        engine.reconfigure(attrs.evolve(engine.config, lanes={}))  # the declared lane is back
        subs = await engine.submit_many([spec("g", str(i), "a.site") for i in range(3)])
        with trio.fail_after(10):
            while len(running) < 2:
                await trio.sleep(0.01)
        await trio.sleep(0.2)
        assert len(running) == 2
        gate.set()
        for sub in subs:
            await engine.wait_final(sub.job.id, timeout=20)


async def test_out_of_range_priority_is_refused_and_a_failed_move_changes_nothing(
    make_engine: Any,
) -> None:
    async with make_engine(workers=1) as (_rt, engine):
        engine.register("noop", noop)
        await engine.pause_queue()
        with pytest.raises(InvalidInput, match=r"^priority:") as info:
            await engine.submit(spec(priority=10**23))
        assert info.value.field == "priority"
        a = (await engine.submit(spec(target="a", priority=5))).job.id
        b = (await engine.submit(spec(target="b"))).job.id
        for kwargs in ({"priority": 10**23}, {"position": 10**23}, {"position": -1}):
            with pytest.raises(InvalidInput) as info:
                await engine.move_job(b, **kwargs)
            assert info.value.field == next(iter(kwargs))
        # a write that fails (the store is unreachable) leaves memory as it was
        real_write = engine._write

        async def failing(fn: Any) -> Any:
            raise StoreError("disk I/O error")

        engine._write = failing
        with pytest.raises(StoreError):
            await engine.move_job(b, priority=PRIORITY_MAX, position=0)
        engine._write = real_write
        assert await engine.move_job(b, how="end") == {"id": b, "priority": 0, "position": 1}
        jobs, _total = await engine.list_jobs(states=["queued"])
        assert [(j.id, j.priority) for j in jobs] == [(a, 5), (b, 0)]
        await engine.resume_queue()
        for job_id in (a, b):
            assert (await engine.wait_final(job_id, timeout=20)).state == JobState.DONE


async def test_non_finite_numbers_are_refused_at_submit(make_engine: Any) -> None:
    async with make_engine() as (_rt, engine):
        engine.register("noop", noop)
        for bad, field in (
            (spec(timeout=float("inf")), "timeout"),
            (spec(timeout=float("nan")), "timeout"),
            (spec(params={"x": float("nan")}), "params"),
        ):
            with pytest.raises(InvalidInput) as info:
                await engine.submit(bad)
            assert info.value.field == field
        assert (await engine.list_jobs())[1] == 0


async def test_a_waiting_job_shows_no_progress_of_its_failed_try(make_engine: Any) -> None:
    async def half_then_fail(ctx: JobContext) -> None:
        ctx.progress(100, 100)
        raise RetryableError("connection reset")

    async with make_engine(retry={"default": SLOW_RETRY}) as (rt, engine):
        engine.register("h", half_then_fail)
        async with rt.bus.subscribe(["jobs"], buffer=100) as sub:
            s = await engine.submit(spec("h"))
            events = await collect(sub, 10, lambda evs: evs[-1].type == "waiting")
        assert events[-1].data["progress"] is None
        job = await engine.get(s.job.id)
        assert job is not None
        assert job.state == JobState.WAITING
        assert job.progress is None
        jobs, _total = await engine.list_jobs()
        assert [j.progress for j in jobs] == [None]


async def test_low_free_space_pauses_the_queue_until_there_is_room(make_engine: Any) -> None:
    free = {"bytes": 10}
    ran: list[str] = []
    seen: list[Path] = []

    def disk_free(path: Path) -> int:
        seen.append(path)
        return free["bytes"]

    async def record(ctx: JobContext) -> None:
        ran.append(ctx.job.target)

    async with make_engine(min_free_bytes=1000, disk_check_interval=0.05) as (_rt, engine):
        engine.disk_free = disk_free
        engine.register("rec", record)
        await engine.pause_queue()
        normal = await engine.submit(spec("rec", "normal"))
        with trio.fail_after(10):
            while "disk" not in engine.queue_paused:
                await trio.sleep(0.01)
        assert seen[-1] == engine.download_root
        forced = await engine.submit(spec("rec", "forced", priority=900))
        await engine.resume_queue()  # the user's pause; even a force job waits for room
        await trio.sleep(0.3)
        assert ran == []
        assert engine.queue_paused == {"disk"}
        free["bytes"] = 1000
        for sub in (forced, normal):
            job = await engine.wait_final(sub.job.id, timeout=20)
            assert job.state == JobState.DONE
        assert ran == ["forced", "normal"]
        assert engine.queue_paused == frozenset()
        assert engine.last_free_bytes == 1000


async def test_a_job_out_of_disk_space_waits_for_room_without_losing_a_try(
    make_engine: Any,
) -> None:
    free = {"bytes": 10**12}
    tries: list[int] = []

    async def fills_the_disk(ctx: JobContext) -> dict[str, Any]:
        tries.append(ctx.job.attempts)
        if len(tries) == 1:
            free["bytes"] = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        return {"ok": True}

    async with make_engine(min_free_bytes=1000, disk_check_interval=0.05) as (_rt, engine):
        engine.disk_free = lambda _path: free["bytes"]
        engine.register("fill", fills_the_disk)
        sub = await engine.submit(spec("fill"))
        with trio.fail_after(10):
            while (job := await engine.get(sub.job.id)) is not None and job.error is None:
                await trio.sleep(0.01)
        assert job is not None
        assert job.state == JobState.QUEUED
        assert job.error_class == "disk_full"
        assert job.attempts == 0  # the try does not count
        assert "disk" in engine.queue_paused
        await trio.sleep(0.3)
        assert tries == [1]
        free["bytes"] = 10**12
        job = await engine.wait_final(sub.job.id, timeout=20)
        assert job.state == JobState.DONE
        assert job.attempts == 1
        assert tries == [1, 1]
        assert engine.queue_paused == frozenset()


async def test_a_disk_full_the_free_space_check_cannot_see_ends_in_failed(
    make_engine: Any,
) -> None:
    """EDQUOT while statvfs reports room (a user quota): the first DISK_FULL_FREE_TRIES tries
    are not counted, later ones are, and the job fails once its retries are spent."""
    tries = 0

    async def over_quota(ctx: JobContext) -> None:
        nonlocal tries
        tries += 1
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    preset = RetryPresetConfig(delays=[0.01], jitter=0.0, final_wait=None)
    async with make_engine(
        min_free_bytes=1000, disk_check_interval=0.05, retry={"quick": preset}
    ) as (_rt, engine):
        engine.disk_free = lambda _path: 10**12
        engine.register("quota", over_quota, retry_preset="quick")
        sub = await engine.submit(spec("quota"))
        job = await engine.wait_final(sub.job.id, timeout=30)
    assert job.state == JobState.FAILED
    assert tries == DISK_FULL_FREE_TRIES + 2  # uncounted tries, then two counted ones
    assert job.attempts == 2
    assert "Disk quota exceeded" in (job.error or "")


async def test_cancelling_a_queued_job_runs_the_final_hook(make_engine: Any) -> None:
    finals: list[str] = []

    async def on_final(job: Any) -> None:
        finals.append(str(job.state))

    async with make_engine() as (_rt, engine):
        engine.register("noop", noop, on_final=on_final)
        await engine.pause_queue()
        sub = await engine.submit(spec())
        await engine.cancel_job(sub.job.id)
        assert finals == ["cancelled"]
