"""The IMAP watcher against a real dovecot on 127.0.0.1 (IDLE and polling), with real MIME
mails; jobs go to a recording engine here (the real engine is in test_end_to_end.py)."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from fanfic.support import Dovecot, RecordingEngine, story_mail
from hathd.config import Config
from hathd.fanfic.config import FanficConfig, ImapConfig, NotifyConfig
from hathd.fanfic.imap import (
    EXTRACT_TRIES,
    MIGRATIONS,
    ImapWatcher,
    MailboxStore,
    _Pending,
    account_name,
)
from hathd.fanfic.mail import extract_text
from hathd.fanfic.stories import Story, stories_in_mail
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
    tmp_path: Path, cfg: ImapConfig, engine: RecordingEngine, **fanfic: Any
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
        # started() came before the first (failed) attempt; it keeps retrying
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


async def test_silent_server_holds_neither_start_nor_stop(tmp_path: Path) -> None:
    """A server that accepts the TCP connection and never greets: ``started`` comes at once
    and cancellation returns at once, though connect_timeout and timeout are 30 s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        cfg = ImapConfig(
            host="127.0.0.1",
            port=silent.getsockname()[1],
            tls="none",
            username="u",
            password="p",
            timeout=30.0,
            connect_timeout=30.0,
        )
        async with open_runtime(Config(), tmp_path / "state") as rt:
            await rt.store.migrate("fanfic", MIGRATIONS)
            submitter = StorySubmitter(
                RecordingEngine(), FanficConfig(enabled=True), Notifier(NotifyConfig())
            )
            watcher = ImapWatcher(cfg, rt.store, submitter)
            async with trio.open_nursery() as nursery:
                began = time.monotonic()
                with trio.fail_after(5):
                    await nursery.start(watcher.serve)
                assert time.monotonic() - began < 1.0
                await trio.sleep(0.5)  # the connection attempt is waiting for a greeting
                conn, _ = silent.accept()  # accepted, never greeted
                with conn:
                    stats = watcher.statistics()
                    assert (stats.connects, stats.errors) == (0, 0)
                    began = time.monotonic()
                    nursery.cancel_scope.cancel()
            assert time.monotonic() - began < 2.0


async def test_server_stalled_mid_session_does_not_hold_stop(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    """dovecot frozen (SIGSTOP) while the watcher waits for a NOOP reply: cancellation
    returns within a few seconds, though the socket timeout is 30 s."""
    assert dovecot.proc is not None
    pgid = dovecot.proc.pid
    engine = RecordingEngine()
    cfg = dovecot.imap_config(tmp_path / "pw", idle=False, poll_interval=0.2, timeout=30.0)
    try:
        async with watching(tmp_path, cfg, engine) as (watcher, _rt, running):
            with trio.fail_after(60):
                await watcher.wait_scans(1)
            os.killpg(pgid, signal.SIGSTOP)
            await trio.sleep(1.5)  # a NOOP (or the next scan) is now waiting for dovecot
            assert watcher.statistics().connected is True
            began = time.monotonic()
            running.scope.cancel()
            with trio.fail_after(15):
                await running.stopped.wait()
            assert time.monotonic() - began < 5.0
    finally:
        os.killpg(pgid, signal.SIGCONT)


async def test_extraction_error_leaves_the_mail_to_be_tried_again(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    """A mail whose story extraction raises is neither recorded nor flagged: the next scan
    tries it again (here it then succeeds). One that always fails is tried EXTRACT_TRIES
    times per run, then left unseen and unrecorded."""
    await dovecot.append(story_mail(["http://test1.com?sid=51"]))  # UID 1: fails once
    await dovecot.append(story_mail(["http://test1.com?sid=52"]))  # UID 2: always fails
    calls: dict[bytes, int] = {}

    def flaky(raw: bytes) -> list[Story]:
        calls[raw] = calls.get(raw, 0) + 1
        if b"sid=52" in raw or calls[raw] == 1:
            raise RuntimeError("FanFicFare broke")
        return stories_in_mail(extract_text(raw))

    engine = RecordingEngine()
    cfg = dovecot.imap_config(tmp_path / "pw", idle=False, poll_interval=0.1)
    async with open_runtime(Config(), tmp_path / "state") as rt:
        await rt.store.migrate("fanfic", MIGRATIONS)
        submitter = StorySubmitter(engine, FanficConfig(enabled=True), Notifier(NotifyConfig()))
        watcher = ImapWatcher(cfg, rt.store, submitter, extract=flaky)
        async with trio.open_nursery() as nursery:
            await nursery.start(watcher.serve)
            with trio.fail_after(60):
                await watcher.wait_scans(EXTRACT_TRIES + 3)
            nursery.cancel_scope.cancel()
        mailbox = MailboxStore(rt.store, account_name(cfg))
        cursor = await mailbox.cursor()
        assert cursor is not None
        handled = await mailbox.handled(cursor.uidvalidity)
    assert [j.target for j in engine.jobs] == ["http://test1.com?sid=51"]
    assert sorted(calls.values()) == [2, EXTRACT_TRIES]
    stats = watcher.statistics()
    assert (stats.extract_errors, stats.messages) == (1 + EXTRACT_TRIES, 1)
    # UID 1 is flagged (so no longer kept); UID 2 is not recorded as handled with no stories
    assert handled == {}
    assert seen_map(await dovecot.flags()) == {1: True, 2: False}


def test_a_connection_handed_over_or_abandoned_has_exactly_one_closer() -> None:
    """The worker thread and the Trio side agree on who closes a connection being set up:
    abandoned before the hand-over, the worker's ``detach`` raises (it closes the client);
    handed over first, ``abandon`` returns the client marked ready (the Trio side closes)."""
    client: Any = object()
    early = _Pending()
    early.attach(client)
    assert early.abandon() is client
    assert not early.ready
    with pytest.raises(OSError, match="abandoned"):
        early.detach()
    late = _Pending()
    late.attach(client)
    late.detach()
    assert late.abandon() is client
    assert late.ready
    never = _Pending()
    assert never.abandon() is None
    with pytest.raises(OSError):
        never.attach(client)
