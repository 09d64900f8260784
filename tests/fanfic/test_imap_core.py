"""The watcher's sans-IO decisions and its rows in the store (no IMAP server)."""

from __future__ import annotations

from pathlib import Path

from hathd.config import Config
from hathd.fanfic.imap import (
    MIGRATIONS,
    Cursor,
    MailboxStore,
    after_select,
    body_of,
    idle_has_news,
    plan_scan,
)
from hathd.runtime import open_runtime


def test_after_select_resets_on_new_uidvalidity() -> None:
    assert after_select(None, 7) == Cursor(7, 0)
    assert after_select(Cursor(7, 40), 7) == Cursor(7, 40)
    assert after_select(Cursor(7, 40), 8) == Cursor(8, 0)


def test_plan_scan() -> None:
    plan = plan_scan([5, 3, 9, 3, 12], {3: 0, 9: 2})
    assert plan.fetch == (5, 12)  # never handled
    assert plan.reflag == (9,)  # jobs committed, flag lost
    # 3 had no story: left alone


def test_idle_news_and_bodies() -> None:
    assert idle_has_news([(4, b"EXISTS")])
    assert idle_has_news([(b"OK", b"Still here"), (2, b"EXPUNGE")])
    assert not idle_has_news([(b"OK", b"Still here")])
    assert not idle_has_news([])
    assert body_of({b"BODY[]<0>": b"raw", b"SEQ": 1}) == b"raw"
    assert body_of({b"BODY[]": b"whole"}) == b"whole"
    assert body_of({}) == b""


async def test_mailbox_rows(tmp_path: Path) -> None:
    async with open_runtime(Config(), tmp_path) as rt:
        await rt.store.migrate("fanfic", MIGRATIONS)
        box = MailboxStore(rt.store, "u@h:143/INBOX")
        other = MailboxStore(rt.store, "u@h:143/Other")
        assert await box.cursor() is None
        await box.reset(Cursor(7, 0))
        await box.mark_handled(7, 3, 0)
        await box.mark_handled(7, 5, 2)
        await box.mark_handled(7, 4, 1)  # handled out of order: the cursor never goes back
        assert await box.cursor() == Cursor(7, 5)
        assert await box.handled(7) == {3: 0, 4: 1, 5: 2}
        assert await other.handled(7) == {}
        await box.prune(7, [3, 5])  # 4 was flagged or expunged since
        assert await box.handled(7) == {3: 0, 5: 2}
        await box.reset(Cursor(8, 0))  # the server renumbered the mailbox
        assert await box.cursor() == Cursor(8, 0)
        assert await box.handled(7) == {}
