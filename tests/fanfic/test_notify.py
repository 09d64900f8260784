"""Notifications: queued without blocking, sent through Apprise from a service, bounded."""

from __future__ import annotations

import pytest
import trio

from fanfic.support import Receiver, free_port
from hathd.fanfic.config import NotifyConfig
from hathd.notify import Notifier


async def test_sent_in_order_through_apprise(receiver: Receiver, nursery: trio.Nursery) -> None:
    notifier = Notifier(NotifyConfig(urls=[receiver.url]))
    await nursery.start(notifier.serve)
    assert notifier.notify("one", "body 1")
    assert notifier.notify("two", "body 2", notify_type="success")
    notes = await receiver.wait_for(2)
    assert [(n["title"], n["message"], n["type"]) for n in notes] == [
        ("one", "body 1", "info"),
        ("two", "body 2", "success"),
    ]
    with trio.fail_after(30):
        while notifier.statistics().sent < 2:
            await trio.sleep(0.05)


def test_no_urls_is_a_no_op_and_a_full_queue_drops() -> None:
    assert Notifier(NotifyConfig()).notify("t", "b") is False
    notifier = Notifier(NotifyConfig(urls=["json://127.0.0.1:9/"], queue=2))
    assert notifier.notify("a", "1")
    assert notifier.notify("b", "2")
    assert notifier.notify("c", "3") is False  # never blocks: dropped and counted
    stats = notifier.statistics()
    assert (stats.queued, stats.dropped, stats.pending) == (2, 1, 2)


@pytest.mark.parametrize("retries", [0, 1])
async def test_unreachable_target_is_counted_not_raised(
    retries: int, receiver: Receiver, nursery: trio.Nursery
) -> None:
    dead = f"json://127.0.0.1:{free_port()}/"
    notifier = Notifier(NotifyConfig(urls=[dead], retries=retries, retry_wait=0.05))
    await nursery.start(notifier.serve)
    notifier.notify("lost", "x")
    with trio.fail_after(60):
        while notifier.statistics().failed < 1:
            await trio.sleep(0.05)
    # the service is still alive and delivers to a working target afterwards
    notifier.config = NotifyConfig(urls=[receiver.url])
    notifier.notify("after", "y")
    notes = await receiver.wait_for(1)
    assert notes[0]["title"] == "after"
