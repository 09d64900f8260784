"""The hath plugin inside a real ``hathd run`` process, and the ``hathd hath`` commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
import trio

from fakes.hath_control import open_fake_control
from fakes.hath_dl import FakeGallery, GalleryQueue
from hathd.hath import protocol as p
from hathd.hath.config import HathConfig
from hathd.hath.credentials import load_credentials

from .helpers import CREDS, sha1

pytestmark = pytest.mark.slow


async def test_daemon_runs_the_node_against_the_fake(
    tmp_path: Path, start_daemon, cli_runner
) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    data = os.urandom(64_000)
    with trio.fail_after(120):
        async with open_fake_control(CREDS) as fake:
            fid = fake.add_file(data)
            saved = await cli_runner(
                "--state-dir",
                str(state),
                "hath",
                "login",
                "--client-id",
                str(CREDS.client_id),
                "--client-key",
                CREDS.client_key,
            )
            assert saved.returncode == 0, saved.stderr
            login_file = state / "data" / "client_login"
            assert login_file.read_text() == f"{CREDS.client_id}-{CREDS.client_key}"
            assert login_file.stat().st_mode & 0o777 == 0o600
            toml = (
                "[hath]\nenabled = true\n"
                f'rpc_server = "{fake.rpc_host}"\nlisten_host = "127.0.0.1"\n'
            )
            daemon = await start_daemon(config_toml_text=toml, state_dir=state)
            stats: dict[str, object] = {}
            while stats.get("state") != "running":
                async with daemon.admin() as admin:
                    stats = await admin.get("/api/v1/hath/status")
                await trio.sleep(0.1)
            port = stats["port"]
            async with httpx.AsyncClient(verify=fake.ca_context()) as c:
                r = await c.get(f"https://127.0.0.1:{port}{fake.keystamped_path(fid)}")
            assert r.content == data
            shown = await cli_runner("--state-dir", str(state), "hath", "status")
            assert json.loads(shown.stdout)["cache"]["count"] == 1
            live = await cli_runner("--state-dir", str(state), "hath", "verify")
            assert live.returncode == 0, live.stderr
            assert b"kept 1 files (64000 bytes), removed 0, moved 0 (by the running node)" in (
                live.stdout
            )

            # the control server's servercmd start_downloader runs the gallery downloader
            queue = GalleryQueue.attach(fake)
            queue.add(FakeGallery.build(802, "Through servercmd", [500, 600]))
            reply = await fake.servercmd(f"https://127.0.0.1:{port}", "start_downloader")
            assert reply.status_code == 200
            with trio.fail_after(60):
                while True:
                    async with daemon.admin() as admin:
                        jobs = await admin.get("/api/v1/jobs", params={"kind": "gallery"})
                    if [j["state"] for j in jobs["jobs"]] == ["done"]:
                        break
                    await trio.sleep(0.1)
            assert jobs["jobs"][0]["source"] == "hath"
            # the server hears of the finished gallery with the downloader's next fetchqueue,
            # which follows the job's done state
            with trio.fail_after(30):
                await queue.wait_done(1)
            assert queue.done == ["802;org"]
            gallery = state / "download" / "Through servercmd [802]"
            assert (gallery / "galleryinfo.txt").is_file()

            assert await daemon.stop() == 0
            assert fake.calls[-1] == ("client_stop", "")
            acts = [a for a, _ in fake.calls]
            assert acts.count("client_login") == 1

            # the index survives; a full verify finds the file intact, then a corrupt one
            path = state / "cache" / fid[:2] / fid[2:4] / fid
            assert path.read_bytes() == data
            ok = await cli_runner("--state-dir", str(state), "hath", "verify")
            assert ok.returncode == 0, ok.stderr
            assert b"kept 1 files" in ok.stdout
            path.write_bytes(b"\0" * len(data))
            bad = await cli_runner("--state-dir", str(state), "hath", "verify")
            assert b"kept 0 files" in bad.stdout
            assert b"removed 1" in bad.stdout
            assert not path.exists()


async def test_enabled_without_credentials_says_off(tmp_path: Path, start_daemon) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(60):
        daemon = await start_daemon(config_toml_text="[hath]\nenabled = true\n")
        async with daemon.admin() as admin:
            stats = await admin.get("/api/v1/hath/status")
        assert stats == {"state": "off", "reason": "no H@H credentials"}
        assert await daemon.stop() == 0


async def test_login_rejects_malformed_keys(tmp_path: Path, cli_runner) -> None:  # type: ignore[no-untyped-def]
    r = await cli_runner(
        "--state-dir", str(tmp_path), "hath", "login", "--client-id", "5", "--client-key", "short"
    )
    assert r.returncode != 0
    assert b"20 characters" in r.stderr
    assert not (tmp_path / "data" / "client_login").exists()
    assert load_credentials(HathConfig(), tmp_path / "data") is None
    assert p.FileId.try_parse(sha1(b"") + "-0-jpg") is not None
