"""``hathd hath download`` → admin API over a real unix socket → the downloader."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import trio
from asyncclick.testing import CliRunner
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from fakes.hath_control import open_fake_control
from fakes.hath_dl import FakeGallery, GalleryQueue
from gallery.helpers import CREDS
from gallery.test_downloader import open_stack
from hathd.admin.app import create_app
from hathd.clictx import CliContext
from hathd.client import AdminClient
from hathd.gallery.cli import hath_download
from hathd.gallery.plugin import GalleryPlugin


async def test_cli_starts_the_downloader_through_the_admin_socket(tmp_path: Path) -> None:
    state = tmp_path / "s"  # short: unix socket paths are limited to 108 bytes
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            gallery = queue.add(FakeGallery.build(601, "By hand", [100, 200]))
            gallery.file(1).gate = trio.Event()
            async with open_stack(state, fake) as stack, trio.open_nursery() as nursery:
                plugin = GalleryPlugin()
                plugin.downloader = stack.downloader
                app = create_app(stack.rt, "token", [plugin])
                cfg = HyperConfig()
                cfg.bind = [f"unix:{stack.rt.paths.socket}"]
                cfg.accesslog = None
                cfg.errorlog = None
                stop = trio.Event()
                await nursery.start(partial(serve, app, cfg, shutdown_trigger=stop.wait))

                runner = CliRunner()
                obj = CliContext(state)
                first = await runner.invoke(hath_download, ["--json"], obj=obj)
                assert first.exit_code == 0, first.output
                reply = json.loads(first.output)
                assert reply["started"] is True
                await queue.wait_hits(1)
                second = await runner.invoke(hath_download, [], obj=obj)
                assert second.exit_code == 0, second.output
                assert "already running" in second.output
                gallery.file(1).gate.set()
                await stack.downloader.wait_idle()
                async with AdminClient(stack.rt.paths.socket) as admin:
                    shown = await admin.get("/api/v1/hath/download")
                assert shown["statistics"]["galleries"] == 1
                assert shown["statistics"]["running"] is False
                # --wait returns once the queue is worked off.
                queue.add(FakeGallery.build(602, "Waited for", [300]))
                waited = await runner.invoke(
                    hath_download, ["--wait", "--interval", "0.05"], obj=obj
                )
                assert waited.exit_code == 0, waited.output
                assert "gallery queue worked off" in waited.output
                assert "galleries: 2 done, 0 failed" in waited.output
                stop.set()
            assert queue.done == ["601;org", "602;org"]
