"""The fanfic plugin inside a real ``hathd run`` process: configured from TOML, fed by dovecot
and by ``hathd fanfic add``, stopped with SIGTERM."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from fanfic.support import Dovecot, Receiver, calibre_books, story_mail


def toml_list(items: list[str]) -> str:
    return json.dumps(items)


@pytest.mark.slow
async def test_daemon_runs_the_pipeline(
    tmp_path: Path,
    dovecot: Dovecot,
    receiver: Receiver,
    start_daemon: Callable[..., Awaitable[Any]],
    cli_runner: Callable[..., Awaitable[Any]],
) -> None:
    library = tmp_path / "library"
    (tmp_path / "imap-pw").write_text(dovecot.password + "\n")
    config = f"""
[imap]
host = "127.0.0.1"
port = {dovecot.port}
tls = "none"
username = "{dovecot.user}"
password_file = "{tmp_path / "imap-pw"}"
idle_check = 1.0

[fanfic]
enabled = true
fanficfare = {toml_list([sys.executable, "-m", "fanficfare.cli"])}

[fanfic.calibre]
library = "{library}"

[notify]
urls = {toml_list([receiver.url])}
retry_wait = 0.1
"""
    await dovecot.append(story_mail(["http://test1.com?sid=8"]))
    daemon = await start_daemon(config_toml_text=config)
    async with daemon.admin() as admin:
        with trio.fail_after(120):
            while True:
                status = await admin.get("/api/v1/fanfic/status")
                if status["jobs"]["added"] >= 1:
                    break
                await trio.sleep(0.2)
        services = {s["name"]: s for s in (await admin.get("/api/v1/status"))["services"]}
    assert services["fanfic-imap"]["state"] == "running"
    assert services["notify"]["state"] == "running"
    assert status["imap"]["connected"] is True

    added = await cli_runner(
        "--state-dir", str(daemon.state_dir), "fanfic", "add", "http://test1.com?sid=10"
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["created"] == ["http://test1.com?sid=10"]
    notes = await receiver.wait_for(2, timeout=120)
    assert sorted(n["message"] for n in notes) == ["Test Story Title 10", "Test Story Title 8"]
    assert await daemon.stop() == 0
    books = await trio.to_thread.run_sync(calibre_books, library)
    assert sorted(b["identifiers"]["url"] for b in books) == [
        "http://test1.com?sid=10",
        "http://test1.com?sid=8",
    ]
    assert b"\\Seen" in (await dovecot.flags())[1]
