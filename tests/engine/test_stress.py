"""Random user operations racing running jobs: the store and the engine's memory never
disagree, and once everything is resumed every job finishes."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio

from hathd.engine import JobConflict, JobNotFound
from hathd.engine.api import ACTIVE_STATES, JobContext, JobSpec, JobState
from hathd.errors import PermanentError, RetryableError


@pytest.mark.parametrize("restart", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_operations_keep_store_and_memory_in_step(
    make_engine: Any, seed: int, restart: bool
) -> None:
    rng = random.Random(seed)

    async def handler(ctx: JobContext) -> dict[str, Any]:
        roll = rng.random()
        await trio.sleep(rng.choice([0, 0.001, 0.01, 0.03]))
        if roll < 0.15:
            raise RetryableError("flaky")
        if roll < 0.2:
            raise PermanentError("bad")
        return {"ok": True}

    async with make_engine(workers=6) as (rt, engine):
        engine.register("r", handler)
        ids: list[str] = []
        await random_operations(engine, rng, ids)
        if not restart:
            await settle(engine, rt, ids)
    if restart:
        # the engine stopped with jobs running, queued, waiting and paused: start it again
        async with make_engine(workers=6) as (rt, engine):
            engine.register("r", handler)
            await settle(engine, rt, ids)


async def random_operations(engine: Any, rng: random.Random, ids: list[str]) -> None:
    for round_ in range(40):
        op = rng.random()
        try:
            if op < 0.3 or not ids:
                subs = await engine.submit_many(
                    [
                        JobSpec(kind="r", target=f"{round_}-{i}", domain=f"d{rng.randrange(4)}")
                        for i in range(rng.randrange(1, 6))
                    ]
                )
                ids.extend(s.job.id for s in subs)
            else:
                job_id = rng.choice(ids)
                action = rng.choice(["pause", "resume", "cancel", "retry", "move", "prio", "queue"])
                if action == "pause":
                    await engine.pause_job(job_id, timeout=5)
                elif action == "resume":
                    await engine.resume_job(job_id)
                elif action == "cancel":
                    await engine.cancel_job(job_id, timeout=5)
                elif action == "retry":
                    await engine.retry_job(job_id)
                elif action == "move":
                    await engine.move_job(job_id, position=rng.randrange(0, 10))
                elif action == "prio":
                    await engine.move_job(job_id, priority=rng.randrange(-2, 3))
                elif engine.queue_paused:
                    await engine.resume_queue()
                else:
                    await engine.pause_queue()
        except (JobConflict, JobNotFound):
            pass
        await trio.sleep(rng.choice([0, 0.005, 0.02]))


async def settle(engine: Any, rt: Any, ids: list[str]) -> None:
    # settle: resume the queue and every paused job
    await engine.resume_queue()
    with trio.fail_after(60):
        while True:
            await trio.sleep(0.05)
            jobs, _ = await engine.list_jobs(limit=1000)
            for job in jobs:
                if job.state == JobState.PAUSED:
                    await engine.resume_job(job.id)
            if all(j.state not in ACTIVE_STATES for j in jobs):
                break
    jobs, total = await engine.list_jobs(limit=1000)
    assert total == len(ids)
    assert sorted(j.id for j in jobs) == sorted(ids)
    stats = engine.statistics()
    assert (stats.queued, stats.running, stats.waiting, stats.paused) == (0, 0, 0, 0)
    assert rt.engine is engine
    for job in jobs:
        assert job.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
        if job.state == JobState.DONE:
            assert job.result == {"ok": True}
