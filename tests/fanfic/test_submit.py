"""Stories to jobs: one job per story (de-duplicated), one lane per site, disabled sites only
notified."""

from __future__ import annotations

import trio

from fanfic.support import Receiver, RecordingEngine
from hathd.fanfic.config import FanficConfig, NotifyConfig
from hathd.fanfic.handler import TITLE_SUCCESS
from hathd.fanfic.stories import Story
from hathd.fanfic.submit import StorySubmitter
from hathd.notify import Notifier


async def test_disabled_sites_dedupe_and_lanes(receiver: Receiver, nursery: trio.Nursery) -> None:
    engine = RecordingEngine()
    notifier = Notifier(NotifyConfig(urls=[receiver.url]))
    await nursery.start(notifier.serve)
    cfg = FanficConfig(enabled=True, disabled_sites=["WWW.FanFiction.net"], priority=3)
    submitter = StorySubmitter(engine, cfg, notifier)
    ffnet = Story("https://www.fanfiction.net/s/1/1/", "www.fanfiction.net")
    a = Story("http://test1.com?sid=1", "test1.com")
    b = Story("http://test2.com?sid=1", "test2.com")

    report = await submitter.submit([a, ffnet, b], source="imap", source_id="7:1")
    assert report.created == (a.url, b.url)
    assert report.disabled == (ffnet.url,)
    assert engine.lanes == {"test1.com": 1, "test2.com": 1}
    assert [(j.kind, j.domain, j.dedupe_key, j.source_id) for j in engine.jobs] == [
        ("fanfic", "test1.com", a.url, "7:1"),
        ("fanfic", "test2.com", b.url, "7:1"),
    ]

    again = await submitter.submit([a])
    assert again.created == ()
    assert again.existing == (a.url,)
    assert len(engine.jobs) == 2

    notes = await receiver.wait_for(1)
    assert notes == [
        {
            "version": "1.0",
            "title": TITLE_SUCCESS,
            "message": ffnet.url,
            "attachments": [],
            "type": "info",
        }
    ]
    assert submitter.spec(a, source="api", source_id=None).priority == 3
    assert submitter.spec(a, source="api", source_id=None).params == {}
    forced = submitter.spec(a, source="api", source_id=None, update_method="force")
    assert forced.params == {"update_method": "force"}
