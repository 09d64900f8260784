"""Transitions written in groups: fewer closures, each acknowledged after its commit, a
failing one fails alone."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import trio

from hathd.engine import jobstore
from hathd.engine.api import Job, JobState
from hathd.engine.txbatch import TransitionBatcher
from hathd.errors import UnencodableText
from hathd.store import open_store


def _job(n: int) -> Job:
    now = time.time()
    return Job(
        id=f"{n:016x}",
        kind="noop",
        target=str(n),
        domain="d.example",
        state=JobState.QUEUED,
        position=n,
        created_at=now,
        updated_at=now,
    )


async def test_concurrent_transitions_share_closures_and_are_durable(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with open_store(path) as store:
        await store.migrate("engine", jobstore.SCHEMA)
        jobs = [_job(n) for n in range(40)]
        await store.write(lambda conn: jobstore.insert_jobs(conn, jobs))
        batcher = TransitionBatcher(store)
        results: dict[str, Job | None] = {}

        async def move(job: Job) -> None:
            results[job.id] = await batcher.transition(
                job.id,
                (JobState.QUEUED,),
                {"state": JobState.RUNNING, "updated_at": 1.0},
                bump_attempts=True,
            )
            # acknowledged means committed: a fresh connection sees it
            conn = sqlite3.connect(path)
            try:
                row = conn.execute(
                    "SELECT state, attempts FROM engine_jobs WHERE id = ?", (job.id,)
                ).fetchone()
            finally:
                conn.close()
            assert row == ("running", 1)

        async with trio.open_nursery() as nursery:
            for job in jobs:
                nursery.start_soon(move, job)
        assert all(r is not None and r.state is JobState.RUNNING for r in results.values())
        assert all(r is not None and r.attempts == 1 for r in results.values())
        assert batcher.groups < len(jobs)
        # a stale transition changes nothing and says so
        assert await batcher.transition(jobs[0].id, (JobState.QUEUED,), {"error": "x"}) is None


async def test_one_failing_transition_fails_alone(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db.sqlite3") as store:
        await store.migrate("engine", jobstore.SCHEMA)
        jobs = [_job(n) for n in range(3)]
        await store.write(lambda conn: jobstore.insert_jobs(conn, jobs))
        batcher = TransitionBatcher(store)
        outcomes: dict[str, object] = {}

        async def move(job: Job, error: str) -> None:
            try:
                outcomes[job.id] = await batcher.transition(
                    job.id, (JobState.QUEUED,), {"state": JobState.DONE, "error": error}
                )
            except UnencodableText as exc:
                outcomes[job.id] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(move, jobs[0], "fine")
            nursery.start_soon(move, jobs[1], "bad \udcff text")
            nursery.start_soon(move, jobs[2], "fine too")
        assert isinstance(outcomes[jobs[1].id], UnencodableText)
        rows = await store.query("SELECT id, state FROM engine_jobs ORDER BY id")
        assert [(r[0], r[1]) for r in rows] == [
            (jobs[0].id, "done"),
            (jobs[1].id, "queued"),
            (jobs[2].id, "done"),
        ]


def test_a_dedupe_key_keeps_the_one_by_one_insert() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    for step in jobstore.SCHEMA:
        conn.executescript(step)
    first = _job(1)
    twin = Job(
        **{f: getattr(first, f) for f in ("kind", "target", "domain", "state")},
        id="ffffffffffffffff",
        dedupe_key="k",
        created_at=1.0,
        updated_at=1.0,
    )
    first_with_key = Job(
        **{f: getattr(first, f) for f in ("kind", "target", "domain", "state")},
        id=first.id,
        dedupe_key="k",
        created_at=1.0,
        updated_at=1.0,
    )
    try:
        out = jobstore.insert_jobs(conn, [first_with_key, twin])
        assert [created for _, created in out] == [True, False]
        with pytest.raises(sqlite3.IntegrityError):
            jobstore.insert_jobs(conn, [_job(1)])
    finally:
        conn.close()
