"""``/metrics``: measured job metrics from the event bus, typed as counters and histograms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from prometheus_client.parser import text_string_to_metric_families

from hathd.admin.metrics import render_metrics
from hathd.config import Config
from hathd.engine import running_engine
from hathd.engine.api import JobContext, JobSpec, JobState
from hathd.errors import PermanentError
from hathd.metrics import JobMetrics
from hathd.runtime import Runtime, open_runtime


def _scrape(rt: Runtime) -> dict[str, Any]:
    body, content_type = render_metrics(rt)
    assert content_type.startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def _value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    if family not in families:
        return 0.0
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return 0.0


async def test_job_metrics_move_with_real_jobs(tmp_path: Path) -> None:
    async def work(ctx: JobContext) -> None:
        await trio.sleep(0.05)
        if ctx.job.target == "bad":
            raise PermanentError("refused")

    async with (
        open_runtime(Config(), tmp_path / "state") as rt,
        running_engine(rt) as engine,
        trio.open_nursery() as nursery,
    ):
        metrics = JobMetrics(rt.bus)
        await nursery.start(metrics.serve)
        engine.register("measured", work)
        before = _scrape(rt)
        subs = await engine.submit_many(
            [JobSpec(kind="measured", target=t, domain="m.example") for t in ("a", "b", "bad")]
        )
        finals = [await engine.wait_final(s.job.id, timeout=30) for s in subs]
        assert [j.state for j in finals] == [JobState.DONE, JobState.DONE, JobState.FAILED]
        with trio.fail_after(10):
            while metrics.statistics()["tracked"]:
                await trio.sleep(0.01)
        after = _scrape(rt)
        nursery.cancel_scope.cancel()

    run = "hathd_job_run_seconds"
    wait = "hathd_job_lane_wait_seconds"
    finished = "hathd_jobs_finished"
    assert after[run].type == "histogram"
    assert after[wait].type == "histogram"
    assert after[finished].type == "counter"
    assert after["hathd_up"].type == "gauge"

    def moved(family: str, sample: str, **labels: str) -> float:
        return _value(after, family, sample, **labels) - _value(before, family, sample, **labels)

    assert moved(run, run + "_count", kind="measured", outcome="done") == 2
    assert moved(run, run + "_count", kind="measured", outcome="failed") == 1
    assert moved(run, run + "_sum", kind="measured", outcome="done") >= 2 * 0.05
    assert moved(wait, wait + "_count", kind="measured") == 3
    assert moved(finished, finished + "_total", kind="measured", state="done") == 2
    assert moved(finished, finished + "_total", kind="measured", state="failed") == 1
