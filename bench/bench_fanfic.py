"""Mailbox scan throughput of the fanfic IMAP watcher against references measured in the same run.

Run: ``.venv/bin/python bench/bench_fanfic.py [--mails 200] [--quick]``

A dovecot on 127.0.0.1 (the test rig of ``tests/fanfic``) holds N story-alert mails (plain +
HTML parts, two ``test1.com`` story URLs each). Measured:

- reference "fetch": bare imapclient, ``UID SEARCH UNSEEN`` then one ``BODY.PEEK[]`` fetch per
  message (the same round trips the watcher makes);
- reference "extract": FanFicFare URL extraction alone on the same messages, in one thread;
- "watcher": :class:`hathd.fanfic.imap.ImapWatcher` from connect until every message is
  handled (fetch, extract, jobs committed to the store, message recorded, ``\\Seen`` set),
  jobs going to an in-memory engine.

The result is printed as a markdown table with the ratio of the watcher's time to the sum of
the two references (1.0 = no overhead beyond fetching and extracting).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fanfic.support import (
    Dovecot,
    RecordingEngine,
    free_port,
    make_rig,
    story_mail,
    write_dovecot_config,
)
from hathd.config import Config
from hathd.fanfic.config import FanficConfig, NotifyConfig
from hathd.fanfic.imap import MIGRATIONS, ImapWatcher
from hathd.fanfic.mail import extract_text
from hathd.fanfic.stories import _identify, stories_in_mail
from hathd.fanfic.submit import StorySubmitter
from hathd.notify import Notifier
from hathd.runtime import open_runtime


def fetch_all(server: Dovecot) -> list[bytes]:
    client = server.client()
    try:
        uids = client.search(["UNSEEN"])
        out = []
        for uid in uids:
            data = client.fetch([uid], ["BODY.PEEK[]"])
            out.append(data[uid][b"BODY[]"])
        return out
    finally:
        client.logout()


async def bench(mails: int) -> None:
    rig, user, group = make_rig()
    port = free_port()
    server = Dovecot(rig, port, free_port())
    write_dovecot_config(server, user, group)
    await server.start()
    try:

        def fill() -> None:
            client = server.client()
            try:
                for n in range(mails):
                    urls = [
                        f"http://test1.com?sid={2 * n + 1}",
                        f"http://test1.com?sid={2 * n + 2}",
                    ]
                    client.append("INBOX", story_mail(urls, subject=f"alert {n}"))
            finally:
                client.logout()

        await trio.to_thread.run_sync(fill)

        began = time.perf_counter()
        raws = await trio.to_thread.run_sync(fetch_all, server)
        t_fetch = time.perf_counter() - began
        assert len(raws) == mails

        began = time.perf_counter()
        found = await trio.to_thread.run_sync(
            lambda: sum(len(stories_in_mail(extract_text(r))) for r in raws)
        )
        t_extract = time.perf_counter() - began
        assert found == 2 * mails
        _identify.cache_clear()  # the watcher starts cold, as the reference did

        with tempfile.TemporaryDirectory() as state:
            async with open_runtime(Config(), Path(state)) as rt:
                await rt.store.migrate("fanfic", MIGRATIONS)
                engine = RecordingEngine()
                submitter = StorySubmitter(
                    engine, FanficConfig(enabled=True), Notifier(NotifyConfig())
                )
                cfg = server.imap_config(Path(state) / "pw")
                watcher = ImapWatcher(cfg, rt.store, submitter)
                async with trio.open_nursery() as nursery:
                    began = time.perf_counter()
                    nursery.start_soon(watcher.serve)
                    await engine.wait_jobs(2 * mails, timeout=600)
                    await watcher.wait_handled(mails)
                    t_watch = time.perf_counter() - began
                    nursery.cancel_scope.cancel()
    finally:
        await server.stop(signal.SIGKILL)

    ref = t_fetch + t_extract
    print(f"| measure ({mails} mails, 2 story URLs each) | seconds | mails/s |")
    print("|---|---|---|")
    print(f"| reference: bare imapclient fetch | {t_fetch:.2f} | {mails / t_fetch:.0f} |")
    print(f"| reference: FanFicFare extraction | {t_extract:.2f} | {mails / t_extract:.0f} |")
    print(f"| hathd watcher (end to end) | {t_watch:.2f} | {mails / t_watch:.0f} |")
    print(f"\nratio watcher / (fetch + extraction) = {t_watch / ref:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=None, help="mails to send (default 200)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 40 mails")
    args = parser.parse_args()
    trio.run(bench, args.mails or (40 if args.quick else 200))


if __name__ == "__main__":
    main()
