"""SIGKILL of a real daemon process in the middle of a gallery, then a restart: the files that
were verified before the kill are not downloaded again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from fakes.hath_control import open_fake_control
from fakes.hath_dl import FakeGallery, GalleryQueue
from gallery.helpers import CREDS, sha1_file
from hathd.client import AdminClient
from hathd.errors import DaemonNotRunning

MAIN = Path(__file__).with_name("daemon_main.py")


async def start(state: Path, config: Path, log: Path) -> trio.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HATHD_", "NOTIFY_SOCKET"))}
    env["HATHD_ADMIN__PORT"] = "0"
    with log.open("ab") as out:
        proc = await trio.lowlevel.open_process(
            [sys.executable, str(MAIN), str(state), str(config)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    while True:  # readiness of another process: poll its admin socket
        if proc.returncode is not None:
            output = log.read_text()  # noqa: ASYNC240
            raise RuntimeError(f"daemon exited with {proc.returncode}:\n{output}")
        try:
            async with AdminClient(state / "admin.sock") as admin:
                await admin.get("/healthz")
            return proc
        except DaemonNotRunning:
            await trio.sleep(0.05)


@pytest.mark.slow
async def test_sigkill_mid_gallery_then_restart(tmp_path: Path) -> None:
    state = tmp_path / "s"
    log = tmp_path / "daemon.log"
    with trio.fail_after(120):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(901, "Killed", [2000, 3000, 4000, 5000]))
            gate = gallery.file(3).gate = trio.Event()
            config = tmp_path / "hathd.toml"
            config.write_text(
                f'[hath]\nclient_id = {CREDS.client_id}\nclient_key = "{CREDS.client_key}"\n'
                f'rpc_server = "{fake.rpc_host}"\n'
            )
            proc = await start(state, config, log)
            try:
                async with AdminClient(state / "admin.sock") as admin:
                    assert (await admin.post("/api/v1/hath/download"))["started"] is True
                await queue.wait_hits(3)  # files 1 and 2 are in place; file 3 is in flight
                proc.kill()
                assert await proc.wait() == -signal.SIGKILL
                gdir = state / "download" / "Killed [901]"
                assert sorted(p.name for p in gdir.iterdir()) == ["001.jpg", "002.jpg"]
                gallery.file(3).gate = None
                gate.set()

                proc = await start(state, config, log)
                async with AdminClient(state / "admin.sock") as admin:
                    await admin.post("/api/v1/hath/download")
                    await queue.wait_done(1)
                    jobs = await admin.get("/api/v1/jobs", params={"kind": "gallery"})
                proc.send_signal(signal.SIGTERM)
                assert await proc.wait() == 0, log.read_text()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    assert [f.hits for f in gallery.files] == [1, 1, 2, 1]
    (job,) = jobs["jobs"]
    assert job["state"] == "done"
    assert (job["result"]["kept"], job["result"]["downloaded"]) == (2, 2)
    for f in gallery.files:
        assert sha1_file(gdir / f"{f.filename}.jpg") == f.sha1
    assert (gdir / "galleryinfo.txt").read_text() == gallery.information
