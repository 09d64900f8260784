"""A real ``hathd run`` process is SIGKILLed mid-run with 1,000 jobs queued, then restarted:
every job is accounted for exactly once and every file is written exactly once."""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

import pytest
import trio

from hathd.client import AdminClient

CONFIG = """
[daemon]
shutdown_grace = 4.0

[engine]
workers = 16

[engine.lanes."127.0.0.1"]
concurrency = 16

[engine.retry.default]
delays = [0.2, 0.2]
jitter = 0.0
final_wait = 0.5
"""

N_JOBS = 1000


async def count(admin: AdminClient, state: str) -> int:
    page = await admin.get("/api/v1/jobs", params={"state": state, "limit": 1})
    return int(page["total"])


async def all_jobs(admin: AdminClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = await admin.get("/api/v1/jobs", params={"limit": 1000, "offset": len(out)})
        out.extend(page["jobs"])
        if len(out) >= page["total"] or not page["jobs"]:
            return out


@pytest.mark.slow
async def test_sigkill_mid_run_loses_and_duplicates_nothing(
    start_daemon: Any, http_server: Any
) -> None:
    http_server.delay = 0.01
    first = await start_daemon(config_toml_text=CONFIG)
    paths = [f"/small/{i:04d}.bin" for i in range(N_JOBS)]
    items = [
        {"url": http_server.url(p), "sha256": hashlib.sha256(http_server.body_for(p)).hexdigest()}
        for p in paths
    ]
    async with first.admin() as admin:
        reply = await admin.post("/api/v1/jobs", {"jobs": items})
        submitted = [e["job"]["id"] for e in reply["jobs"]]
        assert len(set(submitted)) == N_JOBS
        with trio.fail_after(120):
            while await count(admin, "done") < 150:
                await trio.sleep(0.05)
    first.kill()
    await first.proc.wait()

    conn = sqlite3.connect(first.state_dir / "hathd.sqlite3")
    states = dict(conn.execute("SELECT state, COUNT(*) FROM engine_jobs GROUP BY state").fetchall())
    conn.close()
    assert sum(states.values()) == N_JOBS
    assert states.get("done", 0) < N_JOBS, "the kill came too late to test anything"

    second = await start_daemon(config_toml_text=CONFIG, state_dir=first.state_dir)
    async with second.admin() as admin:
        with trio.fail_after(180):
            while await count(admin, "done") < N_JOBS:
                await trio.sleep(0.1)
        jobs = await all_jobs(admin)
        status = await admin.get("/api/v1/status")
    engine_service = next(s for s in status["services"] if s["name"] == "engine")
    assert engine_service["state"] == "running"
    assert engine_service["statistics"]["queued"] == 0
    assert engine_service["statistics"]["finished"] >= 1
    assert sorted(j["id"] for j in jobs) == sorted(submitted)  # each exactly once
    assert {j["state"] for j in jobs} == {"done"}
    root = first.state_dir / "download"
    files = sorted(p.name for p in root.iterdir())
    assert files == sorted(p.rsplit("/", 1)[1] for p in paths)  # no duplicates, no .part
    for job in jobs:
        path = job["target"].split(str(http_server.port), 1)[1]
        assert (root / path.rsplit("/", 1)[1]).read_bytes() == http_server.body_for(path)
    await second.stop()


@pytest.mark.slow
async def test_sigterm_writes_running_jobs_back_as_queued(
    start_daemon: Any, http_server: Any
) -> None:
    http_server.delay = 60.0  # every download hangs: the jobs are running at shutdown
    daemon = await start_daemon(config_toml_text=CONFIG)
    async with daemon.admin() as admin:
        items = [{"url": http_server.url(f"/small/{i}.bin")} for i in range(20)]
        await admin.post("/api/v1/jobs", {"jobs": items})
        with trio.fail_after(60):
            while await count(admin, "running") < 16:
                await trio.sleep(0.05)
    assert await daemon.stop() == 0
    conn = sqlite3.connect(daemon.state_dir / "hathd.sqlite3")
    states = dict(conn.execute("SELECT state, COUNT(*) FROM engine_jobs GROUP BY state").fetchall())
    attempts = conn.execute("SELECT MAX(attempts) FROM engine_jobs").fetchone()[0]
    conn.close()
    assert states == {"queued": 20}
    assert attempts == 1
    assert list((daemon.state_dir / "download").glob("*.bin")) == []
