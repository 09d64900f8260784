"""End to end, in one process with the real engine: dovecot → IMAP watcher → ``fanfic`` jobs →
FanFicFare (offline test1.com) → calibredb into a library created here → Apprise ``json://``
notifications to a local receiver."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio
from quart_trio import QuartTrio

from fanfic.support import Dovecot, Receiver, calibre_books, story_mail
from hathd.config import Config
from hathd.engine import running_engine
from hathd.engine.api import JobState
from hathd.fanfic.config import CalibreConfig, FanficConfig, NotifyConfig
from hathd.fanfic.handler import TITLE_FAILED, TITLE_SUCCESS
from hathd.fanfic.plugin import FanficPlugin
from hathd.runtime import open_runtime

FANFICFARE = [sys.executable, "-m", "fanficfare.cli"]


@pytest.mark.slow
async def test_mail_to_books_with_notifications(
    tmp_path: Path, dovecot: Dovecot, receiver: Receiver
) -> None:
    library = tmp_path / "library"
    config = Config(
        imap=dovecot.imap_config(tmp_path / "imap-password"),
        fanfic=FanficConfig(
            enabled=True,
            fanficfare=FANFICFARE,
            calibre=CalibreConfig(library=str(library)),
        ),
        notify=NotifyConfig(urls=[receiver.url], retry_wait=0.1),
    )
    plugin = FanficPlugin()
    assert plugin.enabled(config)
    assert not plugin.enabled(Config())
    three = [f"http://test1.com?sid={n}" for n in (2, 4, 6)]
    await dovecot.append(story_mail(three, subject="Three updates"))
    await dovecot.append(story_mail(["https://example.com/nothing-here"]))
    async with open_runtime(config, tmp_path / "state") as rt, running_engine(rt) as engine:
        await plugin.setup(rt)
        parts = plugin.parts
        assert parts is not None
        assert parts.watcher is not None
        services = {spec.name: spec for spec in plugin.services(rt)}
        assert set(services) == {"notify", "fanfic-imap"}
        async with trio.open_nursery() as nursery:
            for spec in services.values():
                await nursery.start(spec.serve)
            with trio.fail_after(120):
                await parts.watcher.wait_handled(2)
            assert parts.watcher.statistics().jobs_created == 3
            jobs, total = await engine.list_jobs(kind="fanfic")
            assert total == 3
            assert sorted(j.target for j in jobs) == sorted(three)
            finals = [await engine.wait_final(j.id, timeout=180) for j in jobs]
            assert [j.state for j in finals] == [JobState.DONE] * 3, [j.error for j in finals]
            assert {j.result["outcome"] for j in finals if j.result} == {"added"}

            # the admin API: a story URL (any chapter link) and a URL no adapter knows
            app = QuartTrio(__name__)
            blueprint = plugin.blueprint(rt)
            assert blueprint is not None
            app.register_blueprint(blueprint)
            client = app.test_client()
            reply = await client.post(
                "/api/v1/fanfic/stories",
                json={"urls": ["http://test1.com?sid=666&chapter=2", "http://nowhere.invalid/s/1"]},
            )
            body = await reply.get_json()
            assert reply.status_code == 200
            assert body["created"] == ["http://test1.com?sid=666"]
            assert [r["url"] for r in body["rejected"]] == ["http://nowhere.invalid/s/1"]
            all_jobs, _ = await engine.list_jobs(kind="fanfic")
            job_666 = next(j for j in all_jobs if j.target == "http://test1.com?sid=666")
            failed = await engine.wait_final(job_666.id, timeout=120)
            assert failed.state is JobState.FAILED
            assert "does not exist" in (failed.error or "")
            bad = await client.post("/api/v1/fanfic/stories", json={"urls": "nope"})
            assert bad.status_code == 400
            bad = await client.post(
                "/api/v1/fanfic/stories", json={"urls": three, "update_method": "always"}
            )
            assert bad.status_code == 400
            assert "update_method" in (await bad.get_json())["error"]

            notes = await receiver.wait_for(4)
            status = await (await client.get("/api/v1/fanfic/status")).get_json()
            nursery.cancel_scope.cancel()

    successes = sorted(n["message"] for n in notes if n["title"] == TITLE_SUCCESS)
    assert successes == ["Test Story Title 2", "Test Story Title 4", "Test Story Title 6"]
    assert next(n for n in notes if n["title"] == TITLE_FAILED)["message"].startswith(
        "http://test1.com?sid=666"
    )
    books = await trio.to_thread.run_sync(calibre_books, library)
    assert sorted(b["identifiers"]["url"] for b in books) == sorted(three)
    assert all(any(f.endswith(".epub") for f in b["formats"]) for b in books)
    flags = await dovecot.flags()
    assert b"\\Seen" in flags[1]
    assert b"\\Seen" not in flags[2]
    assert status["jobs"]["added"] == 3
    assert status["jobs"]["permanent"] == 1
    assert status["imap"]["messages"] == 2
