"""SIGKILL of a real ``hathd run`` process in the middle of a gallery, then a restart: the
files that were verified before the kill are not downloaded again."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from conftest import StartDaemon
from fakes.hath_control import open_fake_control
from fakes.hath_dl import FakeGallery, GalleryQueue
from gallery.helpers import CREDS, sha1_file


@pytest.mark.slow
async def test_sigkill_mid_gallery_then_restart(tmp_path: Path, start_daemon: StartDaemon) -> None:
    state = tmp_path / "s"
    with trio.fail_after(120):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(901, "Killed", [2000, 3000, 4000, 5000]))
            gate = gallery.file(3).gate = trio.Event()
            config = (
                f'[hath]\nclient_id = {CREDS.client_id}\nclient_key = "{CREDS.client_key}"\n'
                f'rpc_server = "{fake.rpc_host}"\n'
            )
            daemon = await start_daemon(config, state_dir=state)
            async with daemon.admin() as admin:
                assert (await admin.post("/api/v1/hath/download"))["started"] is True
            await queue.wait_hits(3)  # files 1 and 2 are in place; file 3 is in flight
            daemon.kill()
            assert await daemon.proc.wait() == -signal.SIGKILL
            gdir = state / "download" / "Killed [901]"
            assert sorted(p.name for p in gdir.iterdir()) == ["001.jpg", "002.jpg"]
            gallery.file(3).gate = None
            gate.set()

            daemon = await start_daemon(config, state_dir=state)
            async with daemon.admin() as admin:
                await admin.post("/api/v1/hath/download")
                await queue.wait_done(1)
                jobs = await admin.get("/api/v1/jobs", params={"kind": "gallery"})
            assert await daemon.stop() == 0, daemon.log()
    assert [f.hits for f in gallery.files] == [1, 1, 2, 1]
    (job,) = jobs["jobs"]
    assert job["state"] == "done"
    assert (job["result"]["kept"], job["result"]["downloaded"]) == (2, 2)
    for f in gallery.files:
        assert sha1_file(gdir / f"{f.filename}.jpg") == f.sha1
    assert (gdir / "galleryinfo.txt").read_text() == gallery.information
