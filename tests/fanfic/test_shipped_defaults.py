"""The fanfic pipeline as shipped: ``hathd run`` started the way the README and the systemd unit
start it (the virtualenv's entry point, a ``PATH`` without the virtualenv's ``bin``), a
configuration that sets only what a user must (the IMAP account, the Calibre library) and every
command at its default. A story mailed to the account ends up in the library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from conftest import DaemonHandle, daemon_env
from fanfic.support import Dovecot, calibre_books, story_mail

# systemd's default PATH for services (systemd.exec(5), "Environment variables in spawned
# processes"); the virtualenv's bin is not on it.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HATHD = Path(sys.executable).with_name("hathd")


@pytest.mark.slow
async def test_mailed_story_lands_in_calibre_with_default_commands(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    assert HATHD.exists(), "the hathd entry point of the virtualenv"
    library = tmp_path / "library"
    password = tmp_path / "imap-password"
    password.write_text(dovecot.password + "\n")
    config = tmp_path / "hathd.toml"
    config.write_text(
        "[imap]\n"
        'host = "127.0.0.1"\n'
        f"port = {dovecot.port}\n"
        'tls = "none"\n'
        f'username = "{dovecot.user}"\n'
        f'password_file = "{password}"\n'
        "[fanfic]\n"
        "enabled = true\n"
        "[fanfic.calibre]\n"
        f'library = "{library}"\n'
    )
    await dovecot.append(story_mail(["http://test1.com?sid=4"], subject="New chapter"))
    state = tmp_path / "state"
    env = daemon_env({"PATH": SYSTEMD_PATH, "HOME": str(tmp_path / "home")})
    env.pop("VIRTUAL_ENV", None)
    log = tmp_path / "hathd.log"
    with log.open("wb") as out:
        proc = await trio.lowlevel.open_process(
            [str(HATHD), "--state-dir", str(state), "--config", str(config), "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    daemon = DaemonHandle(proc, state, config, env, log)
    try:
        await daemon.wait_ready()
        async with daemon.admin() as admin:
            status = await admin.get("/api/v1/status")
            programs = {p["name"]: p for p in status["programs"]}
            assert programs["fanficfare"]["found"], programs
            assert Path(programs["fanficfare"]["path"]).parent == HATHD.parent
            assert programs["calibredb"]["found"], programs
            with trio.fail_after(300):
                while True:
                    page = await admin.get("/api/v1/jobs?kind=fanfic")
                    states = [j["state"] for j in page["jobs"]]
                    if states and all(s in {"done", "failed", "cancelled"} for s in states):
                        break
                    await trio.sleep(0.5)
        assert [(j["state"], j["error"]) for j in page["jobs"]] == [("done", None)]
        books = await trio.to_thread.run_sync(calibre_books, library)
        assert [b["identifiers"]["url"] for b in books] == ["http://test1.com?sid=4"]
        assert any(f.endswith(".epub") for f in books[0]["formats"])
    finally:
        code = await daemon.stop()
    assert code == 0, daemon.log()
