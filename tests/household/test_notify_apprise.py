"""Notifications through real Apprise to a local ``json://`` receiver: each event kind's
payload, its own URLs, quiet hours (held, then sent), the event relay on a real bus, the disk
watch and the test action."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import trio

from fanfic.support import Receiver
from hathd.config import Config
from hathd.notify.config import DiskRoute, EventRoute, JobRoute, NotifyConfig
from hathd.notify.disk import DiskReading, DiskWatch
from hathd.notify.plugin import NotifyPlugin, send_test
from hathd.notify.sender import Notifier
from hathd.runtime import Runtime, open_runtime


async def _runtime(
    cfg: Config, state: Path, *, task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED
) -> None:
    async with open_runtime(cfg, state) as rt:
        task_status.started(rt)
        await trio.sleep_forever()


class Clock:
    """A settable local time."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_each_kind_goes_to_its_own_urls(
    receiver: Receiver, tmp_path: Path, nursery: trio.Nursery
) -> None:
    url = receiver.url
    cfg = NotifyConfig(
        job_failed=JobRoute(urls=[url + "?kind=failed"]),
        hath_node=EventRoute(urls=[url]),
        retry_wait=0.05,
    )
    notifier = Notifier(cfg)
    await nursery.start(notifier.serve)
    assert notifier.notify("Done", "x", kind="job_done") is False  # no URL for job_done
    assert notifier.notify(
        "Job failed: transfer", "t\nboom", notify_type="failure", kind="job_failed"
    )
    assert notifier.notify("H@H node terminated", "bye", notify_type="failure", kind="hath_node")
    notes = await receiver.wait_for(2)
    assert [(n["title"], n["message"], n["type"]) for n in notes] == [
        ("Job failed: transfer", "t\nboom", "failure"),
        ("H@H node terminated", "bye", "failure"),
    ]
    assert notifier.notify("?", "?", kind="no-such-kind") is False


async def test_quiet_hours_hold_messages_until_the_window_ends(
    receiver: Receiver, nursery: trio.Nursery
) -> None:
    clock = Clock(datetime(2026, 3, 14, 23, 30))
    cfg = NotifyConfig(
        job_done=JobRoute(urls=[receiver.url], quiet_hours="22:00-07:00"),
        job_failed=JobRoute(urls=[receiver.url]),
    )
    notifier = Notifier(cfg, now=clock, recheck=0.05)
    await nursery.start(notifier.serve)
    notifier.notify("held", "at night", kind="job_done")
    notifier.notify("loud", "failures are not quiet here", kind="job_failed")
    notes = await receiver.wait_for(1)
    assert [n["title"] for n in notes] == ["loud"]
    with trio.fail_after(10):
        while notifier.statistics().held != 1:
            await trio.sleep(0.02)
    await trio.sleep(0.3)  # still night: nothing more arrives
    assert len(receiver.received) == 1
    clock.now = datetime(2026, 3, 15, 7, 0) + timedelta(seconds=1)
    notes = await receiver.wait_for(2)
    assert [(n["title"], n["message"]) for n in notes[1:]] == [("held", "at night")]
    with trio.fail_after(10):
        while notifier.statistics().sent < 2:  # counted once Apprise returns
            await trio.sleep(0.02)
    stats = notifier.statistics()
    assert (stats.sent, stats.held, stats.failed) == (2, 0, 0)


async def test_bus_events_are_relayed_with_their_payload(
    receiver: Receiver, nursery: trio.Nursery, tmp_path: Path
) -> None:
    cfg = Config(
        notify=NotifyConfig(
            job_done=JobRoute(urls=[receiver.url]),
            episode_queued=EventRoute(urls=[receiver.url]),
        )
    )
    rt = await nursery.start(_runtime, cfg, tmp_path / "state")
    bus = rt.bus
    plugin = NotifyPlugin()
    await plugin.setup(rt)
    for spec in plugin.services(rt):
        await nursery.start(spec.serve)
    bus.publish("jobs", "done", {"kind": "media-refresh", "target": "/lib", "result": {}})
    bus.publish(
        "jobs",
        "done",
        {"kind": "transfer", "target": "/remote/a.mkv", "result": {"dest": "/dl/a.mkv"}},
    )
    bus.publish(
        "anime",
        "watchlist-queued",
        {"series": "frieren", "jobs": [{"season": 1, "episode": 2, "job": "j", "created": True}]},
    )
    notes = await receiver.wait_for(2)
    assert [(n["title"], n["message"], n["type"]) for n in notes] == [
        ("Job done: transfer", "/remote/a.mkv\n→ /dl/a.mkv", "success"),
        ("New episode queued: frieren", "S01E02", "info"),
    ]


async def test_disk_watch_warns_once(
    receiver: Receiver, nursery: trio.Nursery, tmp_path: Path
) -> None:
    cfg = NotifyConfig(disk_full=DiskRoute(urls=[receiver.url], threshold_percent=80))
    notifier = Notifier(cfg)
    await nursery.start(notifier.serve)
    used = [50.0, 85.0, 86.0]

    def read(path: str) -> DiskReading:
        return DiskReading(path, used.pop(0), 3 * 1024**3, 20 * 1024**3)

    def warn(title: str, body: str) -> None:
        notifier.notify(title, body, notify_type="warning", kind="disk_full")

    watch = DiskWatch(cfg.disk_full, [str(tmp_path)], warn, read=read)
    for _ in range(3):
        await watch.check()
    notes = await receiver.wait_for(1)
    assert notes[0]["title"] == f"Disk nearly full: {tmp_path}"
    assert notes[0]["message"] == "85.0 % used, 3.0 GiB free of 20.0 GiB (threshold 80 %)"
    assert notes[0]["type"] == "warning"
    await trio.sleep(0.3)
    assert len(receiver.received) == 1
    # the real statvfs reading of an existing folder works too
    real = DiskWatch(cfg.disk_full, [str(tmp_path)], warn)
    await real.check()
    assert 0 <= real.last[str(tmp_path)] <= 100


async def test_send_test_reports_each_kind(receiver: Receiver) -> None:
    dead = "json://127.0.0.1:9/"
    notifier = Notifier(
        NotifyConfig(
            urls=[receiver.url],
            hath_node=EventRoute(urls=[dead], quiet_hours="00:00-23:59"),
            timeout=10,
        )
    )
    results = await send_test(notifier, None)
    assert [(r["kind"], r["ok"]) for r in results] == [("hath_node", False), ("fanfic", True)]
    notes = await receiver.wait_for(1)
    assert notes[0]["title"] == "hathd test notification"
    only = await send_test(notifier, "job_done")
    assert only == [{"kind": "job_done", "urls": 0, "ok": False, "error": "no URLs"}]
