"""The plugin wired into a real (in-process) daemon: setup, service, admin routes, the
``start_downloader`` hook and the job API listing galleries like any other job."""

from __future__ import annotations

from pathlib import Path

import trio

from fakes.hath_control import open_fake_control
from fakes.hath_dl import FakeGallery, GalleryQueue
from gallery.helpers import CREDS
from hathd.client import AdminClient
from hathd.config import structure
from hathd.daemon import Daemon
from hathd.engine.plugin import EnginePlugin
from hathd.gallery.plugin import GalleryPlugin
from hathd.runtime import Runtime


async def test_daemon_with_the_gallery_plugin(tmp_path: Path) -> None:
    state = tmp_path / "s"
    with trio.fail_after(90):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            queue.add(FakeGallery.build(801, "Wired", [300, 400]))
            config = structure(
                {
                    "admin": {"port": 0},
                    "hath": {"rpc_server": fake.rpc_host},
                }
            )
            # Credentials from data/client_login, as `hathd hath login` writes them.
            (state / "data").mkdir(parents=True)
            (state / "data" / "client_login").write_text(CREDS.login_file_text())
            gallery = GalleryPlugin()
            daemon = Daemon(config, state, plugins=[EnginePlugin(), gallery])
            async with trio.open_nursery() as nursery:
                rt: Runtime = await nursery.start(daemon.run)
                assert callable(gallery.trigger)
                async with AdminClient(rt.paths.socket) as admin:
                    reply = await admin.post("/api/v1/hath/download")
                    assert reply["started"] is True
                    await gallery.downloader.wait_idle()
                    shown = await admin.get("/api/v1/hath/download")
                    jobs = await admin.get("/api/v1/jobs", params={"kind": "gallery"})
                    status = await admin.get("/api/v1/status")
                daemon.request_stop()
            assert shown["statistics"]["galleries"] == 1
            assert queue.done == ["801;org"]
            gallery_jobs = [j for j in jobs["jobs"] if j["kind"] == "gallery"]
            assert [j["state"] for j in gallery_jobs] == ["done"]
            assert gallery_jobs[0]["source"] == "hath"
            services = {s["name"]: s for s in status["services"]}
            assert services["gallery-downloader"]["state"] == "running"
            assert (state / "download" / "Wired [801]" / "galleryinfo.txt").is_file()
