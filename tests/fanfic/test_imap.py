"""The IMAP watcher against a real dovecot on 127.0.0.1 (IDLE and polling), with real MIME
mails; jobs go to a recording engine here (the real engine is in test_end_to_end.py)."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from fanfic.support import Dovecot, RecordingEngine, story_mail
from hathd.config import Config
from hathd.fanfic.config import FanficConfig, ImapConfig, NotifyConfig
from hathd.fanfic.imap import MIGRATIONS, ImapWatcher, MailboxStore, account_name
from hathd.fanfic.submit import StorySubmitter
from hathd.notify import Notifier
from hathd.runtime import Runtime, open_runtime

SEEN = b"\\Seen"


@attrs.define
class Running:
    """A watcher running in its own cancel scope; ``stopped`` is set once ``serve`` left."""

    scope: trio.CancelScope
    stopped: trio.Event


@asynccontextmanager
async def watching(
    tmp_path: Path, cfg: ImapConfig, engine: RecordingEngine, **fanfic: object
) -> AsyncIterator[tuple[ImapWatcher, Runtime, Running]]:
    async with open_runtime(Config(), tmp_path / "state") as rt:
        await rt.store.migrate("fanfic", MIGRATIONS)
        submitter = StorySubmitter(
            engine, FanficConfig(enabled=True, **fanfic), Notifier(NotifyConfig())
        )
        watcher = ImapWatcher(cfg, rt.store, submitter)
        stopped = trio.Event()

        async def run(*, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                await watcher.serve(task_status=_Relay(task_status, scope))
            stopped.set()

        async with trio.open_nursery() as nursery:
            scope = await nursery.start(run)
            yield watcher, rt, Running(scope, stopped)
            nursery.cancel_scope.cancel()


@attrs.define
class _Relay:
    """Reports the watcher's readiness with the cancel scope around it."""

    inner: trio.TaskStatus[trio.CancelScope]
    scope: trio.CancelScope

    def started(self, value: object = None) -> None:
        self.inner.started(self.scope)


def seen_map(flags: dict[int, tuple[bytes, ...]]) -> dict[int, bool]:
    return {uid: SEEN in f for uid, f in flags.items()}


@pytest.mark.slow
async def test_mails_become_jobs_and_are_marked_seen(tmp_path: Path, dovecot: Dovecot) -> None:
    three = [f"http://test1.com?sid={n}" for n in (11, 12, 13)]
    big = story_mail(["http://test1.com?sid=14"], attachment=10 * 1024 * 1024)
    malformed = (
        b'Subject: broken\r\nContent-Type: multipart/mixed; boundary="nope\r\n\r\n'
        b"--other\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64\r\n"
    )
    await dovecot.append(story_mail([*three, "https://example.com/not-a-story"]))  # UID 1
    await dovecot.append(story_mail(["https://example.com/only/a/link"]))  # UID 2: no story
    await dovecot.append(malformed)  # UID 3
    await dovecot.append(big)  # UID 4
    engine = RecordingEngine()
    cfg = dovecot.imap_config(tmp_path / "pw")
    async with watching(tmp_path, cfg, engine) as (watcher, _rt, _):
        jobs = await engine.wait_jobs(4)
        assert [j.target for j in jobs] == [*three, "http://test1.com?sid=14"]
        assert {j.domain for j in jobs} == {"test1.com"}
        assert jobs[0].source == "imap"
        assert str(jobs[0].source_id).endswith(":1")
        assert all(j.retry_preset == "fanfic" for j in jobs)
        assert engine.lanes == {"test1.com": 1}
        with trio.fail_after(60):
            await watcher.wait_handled(4)
        flags = seen_map(await dovecot.flags())
        assert flags == {1: True, 2: False, 3: False, 4: True}

        # IDLE: a new mail with one known and one new story; the known one is not doubled
        await dovecot.append(story_mail([three[0], "http://test1.com?sid=15"]))
        jobs = await engine.wait_jobs(5)
        assert [j.target for j in jobs][-1] == "http://test1.com?sid=15"
        with trio.fail_after(60):
            await watcher.wait_handled(5)
        assert seen_map(await dovecot.flags())[5] is True
        stats = watcher.statistics()
        assert (stats.connected, stats.messages, stats.jobs_created) == (True, 5, 5)
        assert stats.errors == 0
    assert len(engine.jobs) == 5


async def test_server_restart_reconnects_without_loss_or_doubles(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    engine = RecordingEngine()
    cfg = dovecot.imap_config(tmp_path / "pw")
    await dovecot.append(story_mail(["http://test1.com?sid=21"]))
    async with watching(tmp_path, cfg, engine) as (watcher, _rt, _):
        await engine.wait_jobs(1)
        with trio.fail_after(60):
            await watcher.wait_handled(1)
        await dovecot.stop(signal.SIGKILL)
        await dovecot.start()
        await dovecot.append(story_mail(["http://test1.com?sid=22", "http://test1.com?sid=21"]))
        jobs = await engine.wait_jobs(2)
        with trio.fail_after(60):
            await watcher.wait_handled(2)
        assert watcher.statistics().errors >= 1
        assert watcher.statistics().connects >= 2
    assert [j.target for j in jobs] == ["http://test1.com?sid=21", "http://test1.com?sid=22"]
    assert len(engine.jobs) == 2
    assert seen_map(await dovecot.flags()) == {1: True, 2: True}


async def test_polling_and_resume_from_store(tmp_path: Path, dovecot: Dovecot) -> None:
    """Without IDLE the watcher polls; a second watcher on the same store neither refetches
    a mail left unseen (no story) nor resubmits, and re-flags a mail whose jobs were committed
    before the flag was stored."""
    engine = RecordingEngine()
    cfg = dovecot.imap_config(tmp_path / "pw", idle=False)
    await dovecot.append(story_mail(["https://example.com/nothing"]))  # UID 1
    async with watching(tmp_path, cfg, engine) as (watcher, rt, _):
        with trio.fail_after(60):
            await watcher.wait_handled(1)
        await dovecot.append(story_mail(["http://test1.com?sid=31"]))  # UID 2, by polling
        await engine.wait_jobs(1)
        with trio.fail_after(60):
            await watcher.wait_handled(2)
        assert watcher.statistics().idle is False
        mailbox = MailboxStore(rt.store, account_name(cfg))
        cursor = await mailbox.cursor()
        assert cursor is not None
        assert cursor.last_uid == 2
    # as if the daemon had stopped after the jobs were committed but before \Seen was set:
    await trio.to_thread.run_sync(_unflag, dovecot, 2)
    assert seen_map(await dovecot.flags()) == {1: False, 2: False}

    async with watching(tmp_path, cfg, engine) as (watcher, _rt, _):
        with trio.fail_after(60):
            await watcher.wait_scans(2)
        assert watcher.statistics().messages == 0  # nothing fetched again
    assert seen_map(await dovecot.flags()) == {1: False, 2: True}
    assert len(engine.jobs) == 1


def _unflag(dovecot: Dovecot, uid: int) -> None:
    c = dovecot.client()
    try:
        c.remove_flags([uid], [SEEN])
    finally:
        c.logout()


async def test_cancellation_is_prompt_and_bad_password_retries(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    engine = RecordingEngine()
    cfg = dovecot.imap_config(tmp_path / "pw")
    async with watching(tmp_path, cfg, engine) as (watcher, _rt, running):
        with trio.fail_after(60):
            await watcher.wait_scans(1)
        running.scope.cancel()
        # idle_check is 1 s: leaving IDLE and logging out takes a few seconds at most
        with trio.fail_after(15):
            await running.stopped.wait()
        assert watcher.statistics().connected is False
    bad = dovecot.imap_config(tmp_path / "pw-bad")
    (tmp_path / "pw-bad").write_text("wrong\n")
    async with watching(tmp_path, bad, engine) as (watcher, _rt, _):
        # started() came after the first (failed) attempt; it keeps retrying
        with trio.fail_after(30):
            while watcher.statistics().errors < 2:
                await trio.sleep(0.1)
        assert watcher.statistics().connected is False
        assert "LoginError" in (watcher.statistics().last_error or "")


@pytest.mark.parametrize("mode", ["tls", "starttls"])
async def test_tls_and_starttls(tmp_path: Path, dovecot: Dovecot, mode: str) -> None:
    port = dovecot.tls_port if mode == "tls" else dovecot.port
    cfg = dovecot.imap_config(
        tmp_path / "pw", tls=mode, port=port, ca_file=str(dovecot.rig / "ca.pem")
    )
    await dovecot.append(story_mail(["http://test1.com?sid=41"]))
    engine = RecordingEngine()
    async with watching(tmp_path, cfg, engine) as (watcher, _rt, _):
        jobs = await engine.wait_jobs(1)
        assert jobs[0].target == "http://test1.com?sid=41"
        assert watcher.statistics().errors == 0
    # a certificate from an unknown CA is refused: no session, errors counted, no crash
    untrusted = dovecot.imap_config(tmp_path / "pw", tls=mode, port=port)
    async with watching(tmp_path, untrusted, RecordingEngine()) as (watcher, _rt, _):
        with trio.fail_after(60):
            while watcher.statistics().errors < 1:
                await trio.sleep(0.05)
        assert watcher.statistics().connects == 0
        assert "CERTIFICATE_VERIFY_FAILED" in (watcher.statistics().last_error or "")
