"""Benchmarks of the job engine (results and command in docs/perf-engine.md).

1. Throughput: N no-op jobs over D domains, submitted in batches, run to ``done`` with every
   transition (insert, running, done) committed through the store; jobs/s end to end, as a ratio
   to the raw group-commit rate of the same store measured in the same run (32 producers, one
   single-row INSERT per ``store.write``).
2. Politeness precision: domains with token-bucket rates; no-op jobs for ``T`` seconds of real
   time; measured jobs/s per domain against the configured rate.
3. Resident memory: RSS growth with N jobs queued (queue paused), per job.

Every figure of 1 also comes as CPU time (this process, all threads): CPU seconds per raw
commit and per job, and their ratio, which a loaded machine moves far less than the
wall-clock rates. The load average (1, 5, 15 min) is printed at the start and at the end;
figures on a loaded machine are smoke only.

Usage::

    .venv/bin/python bench/bench_engine.py            # full: 100,000 jobs, 1,000 domains, 10 s
    .venv/bin/python bench/bench_engine.py --quick    # smoke run: 2,000 jobs, 50 domains, 2 s
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from hathd.config import Config
from hathd.engine import running_engine
from hathd.engine.api import JobContext, JobSpec
from hathd.engine.config import EngineConfig, LaneConfig
from hathd.runtime import open_runtime
from hathd.store import open_store


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def noop(ctx: JobContext) -> None:
    await trio.lowlevel.checkpoint()


RAW_CPU: list[float] = []
"""CPU seconds per raw commit of the last :func:`raw_group_commit`."""


async def raw_group_commit(path: Path, writes: int, producers: int = 32) -> float:
    """Single-row INSERTs per second through ``store.write`` with ``producers`` tasks."""
    async with open_store(path) as store:
        await store.migrate("bench", ["CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"])
        per = writes // producers

        async def producer(k: int) -> None:
            for i in range(per):
                await store.write(
                    lambda c, k=k, i=i: c.execute("INSERT INTO t(v) VALUES (?)", (f"{k}-{i}",))
                )

        cpu = time.process_time()
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for k in range(producers):
                nursery.start_soon(producer, k)
        elapsed = time.perf_counter() - start
        RAW_CPU[:] = [(time.process_time() - cpu) / (per * producers)]
        return per * producers / elapsed


async def throughput(tmp: Path, jobs: int, domains: int, workers: int) -> dict[str, Any]:
    config = Config(engine=EngineConfig(workers=workers))
    async with open_runtime(config, tmp / "throughput") as rt, running_engine(rt) as engine:
        finished = 0
        all_done = trio.Event()

        async def on_final(job: Any) -> None:
            nonlocal finished
            finished += 1
            if finished == jobs:
                all_done.set()

        engine.register("noop", noop, on_final=on_final)
        batch = 1000
        cpu = time.process_time()
        start = time.perf_counter()
        for offset in range(0, jobs, batch):
            specs = [
                JobSpec(kind="noop", target=str(i), domain=f"d{i % domains}.example")
                for i in range(offset, min(jobs, offset + batch))
            ]
            await engine.submit_many(specs)
        submitted = time.perf_counter() - start
        with trio.fail_after(3600):
            await all_done.wait()
        elapsed = time.perf_counter() - start
        cpu_per_job = (time.process_time() - cpu) / jobs
        done = len(await rt.store.query("SELECT id FROM engine_jobs WHERE state = 'done'"))
        assert done == jobs, done
        stats = rt.store.statistics()
    return {
        "jobs": jobs,
        "domains": domains,
        "workers": workers,
        "seconds": round(elapsed, 2),
        "submit_seconds": round(submitted, 2),
        "jobs_per_s": round(jobs / elapsed),
        "transitions_per_s": round(3 * jobs / elapsed),
        "store_batches": stats.batches,
        "store_max_batch": stats.max_batch,
        "cpu_us_per_job": round(cpu_per_job * 1e6, 1),
    }


async def politeness(tmp: Path, seconds: float) -> dict[str, Any]:
    rates = {"slow.example": 1.0, "mid.example": 4.0, "fast.example": 20.0}
    lanes = {d: LaneConfig(concurrency=4, rate=r, burst=1) for d, r in rates.items()}
    config = Config(engine=EngineConfig(workers=16, lanes=lanes))
    started: dict[str, list[float]] = {d: [] for d in rates}

    async def record(ctx: JobContext) -> None:
        started[ctx.job.domain].append(trio.current_time())

    async with open_runtime(config, tmp / "politeness") as rt, running_engine(rt) as engine:
        engine.register("rec", record)
        await engine.pause_queue()
        specs = [
            JobSpec(kind="rec", target=str(i), domain=d)
            for d, r in rates.items()
            for i in range(int(r * seconds * 2) + 10)
        ]
        await engine.submit_many(specs)
        t0 = trio.current_time()
        await engine.resume_queue()
        await trio.sleep(seconds)
        await engine.pause_queue()
    out = {}
    for domain, rate in rates.items():
        times = [t for t in started[domain] if t - t0 <= seconds]
        # the first job uses the burst token; the rate shows between first and last start
        measured = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
        out[domain] = {
            "configured_per_s": rate,
            "started": len(times),
            "measured_per_s": round(measured, 3),
            "ratio": round(measured / rate, 4),
            "bound_ok": len(times) <= rate * seconds + 1,
        }
    return out


async def memory(tmp: Path, jobs: int) -> dict[str, Any]:
    config = Config(engine=EngineConfig(workers=4))
    async with open_runtime(config, tmp / "memory") as rt, running_engine(rt) as engine:
        engine.register("noop", noop)
        await engine.pause_queue()
        gc.collect()
        before = rss_bytes()
        for offset in range(0, jobs, 1000):
            await engine.submit_many(
                [
                    JobSpec(
                        kind="noop",
                        target=f"https://d{i % 1000}.example/{i}",
                        domain=f"d{i % 1000}.example",
                    )
                    for i in range(offset, min(jobs, offset + 1000))
                ]
            )
        gc.collect()
        after = rss_bytes()
        assert engine.statistics().queued == jobs
    return {
        "jobs": jobs,
        "rss_before_mib": round(before / 2**20, 1),
        "rss_after_mib": round(after / 2**20, 1),
        "growth_mib": round((after - before) / 2**20, 1),
        "bytes_per_job": round((after - before) / jobs),
    }


async def main(quick: bool) -> dict[str, Any]:
    jobs, domains, seconds = (2_000, 50, 2.0) if quick else (100_000, 1_000, 10.0)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="hathd-bench-") as name:
        tmp = Path(name)
        raw = await raw_group_commit(tmp / "raw.sqlite3", writes=min(3 * jobs, 96_000))
        result = await throughput(tmp, jobs, domains, workers=64)
        result["raw_group_commit_per_s"] = round(raw)
        result["ratio_jobs_to_raw_commits"] = round(result["jobs_per_s"] / raw, 3)
        result["ratio_transitions_to_raw_commits"] = round(result["transitions_per_s"] / raw, 3)
        result["cpu_us_per_raw_commit"] = round(RAW_CPU[0] * 1e6, 1)
        result["cpu_ratio_raw_commit_to_job"] = round(
            RAW_CPU[0] * 1e6 / result["cpu_us_per_job"], 3
        )
        polite = await politeness(tmp, seconds)
        mem = await memory(tmp, jobs)
    return {
        "quick": quick,
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "throughput": result,
        "politeness": polite,
        "memory": mem,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args()
    report = trio.run(main, args.quick)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
