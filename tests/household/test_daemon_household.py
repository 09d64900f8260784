"""End to end: ``hathd run`` with ``[anime]`` against the fake provider site, a fake
Jellyfin and an Apprise ``json://`` receiver. An episode landing makes exactly one refresh and
one notification; the notification test action works from the API (admin only) and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import trio

from conftest import StartDaemon, run_cli
from fakes.anime_site import FakeProviderSite, catalogue, open_fake_provider
from fakes.media_servers import FakeJellyfin, open_fake_media_server
from fanfic.support import Receiver


def _config(library: Path, site: FakeProviderSite, jellyfin: str, receiver: str) -> str:
    return (
        "[anime]\nenabled = true\n"
        f'library = "{library}"\naniworld_url = "{site.base_url}"\n'
        f'sto_url = "{site.base_url}"\nhosters = ["vidoza", "voe"]\nrescan_interval = 0\n'
        "[media_servers]\ndebounce = 1.0\n"
        "[media_servers.servers.living-room]\n"
        f'kind = "jellyfin"\nurl = "{jellyfin}"\ntoken = "jf-key"\n'
        f'local_prefix = "{library}"\nserver_prefix = "/media/anime"\n'
        "[notify.job_done]\n"
        f'urls = ["{receiver}"]\nkinds = ["anime-episode"]\n'
        f'[notify.episode_queued]\nurls = ["{receiver}"]\n'
    )


async def test_an_episode_lands_one_refresh_one_notification(
    start_daemon: StartDaemon, tmp_path: Path, receiver: Receiver
) -> None:
    library = tmp_path / "anime"
    async with (
        open_fake_provider(FakeProviderSite(series=catalogue())) as site,
        open_fake_media_server(FakeJellyfin(token="jf-key")) as jf,
    ):
        h = await start_daemon(_config(library, site, jf.base_url, receiver.url))
        added = await run_cli(
            "--state-dir",
            str(h.state_dir),
            "anime",
            "add",
            f"{site.base_url}/anime/stream/frieren",
            "--season",
            "1",
            "--episodes",
            "1",
            "--json",
        )
        assert added.returncode == 0, added.stderr.decode()
        notes = await receiver.wait_for(1, timeout=90)
        with trio.fail_after(30):
            while not jf.refreshed:
                await trio.sleep(0.1)
        await trio.sleep(2.5)  # past the debounce window: nothing else arrives
        files = sorted(p for p in library.rglob("*") if p.is_file())
        assert len(files) == 1
        season = files[0].parent.relative_to(library)
        assert jf.refreshed == [f"/media/anime/{season}"]
        assert [s.headers["authorization"] for s in jf.seen] == ['MediaBrowser Token="jf-key"']
        assert len(receiver.received) == 1
        assert notes[0]["title"] == "Job done: anime-episode"
        assert str(files[0]) in notes[0]["message"]
        async with h.admin() as admin:
            status = await admin.get("/api/v1/media-servers/status")
            assert status["servers"]["living-room"]["refreshed"] == 1
            assert status["servers"]["living-room"]["last_error"] is None

            tested = await run_cli(
                "--state-dir", str(h.state_dir), "notify", "test", "--event", "job_done"
            )
            assert tested.returncode == 0, tested.stderr.decode()
            assert json.loads(tested.stdout)["results"][0]["ok"] is True
            notes = await receiver.wait_for(2)
            assert notes[1]["title"] == "hathd test notification"
            none = await run_cli(
                "--state-dir", str(h.state_dir), "notify", "test", "--event", "disk_full"
            )
            assert none.returncode == 1

            key = await admin.post("/api/v1/auth/keys", {"name": "ops", "scope": "control"})
        async with httpx.AsyncClient(base_url=h.tcp_url, timeout=60) as client:
            refused = await client.post(
                "/api/v1/notify/test",
                json={},
                headers={"Authorization": f"Bearer {key['key']}"},
            )
            assert refused.status_code == 403
            ok = await client.post(
                "/api/v1/notify/test",
                json={"kind": "job_done"},
                headers={"Authorization": f"Bearer {h.token}"},
            )
            assert ok.status_code == 200
            assert ok.json()["results"] == [{"kind": "job_done", "urls": 1, "ok": True}]
            bad = await client.post(
                "/api/v1/notify/test",
                json={"kind": "nope"},
                headers={"Authorization": f"Bearer {h.token}"},
            )
            assert bad.status_code == 400
            assert bad.json()["field"] == "kind"
        await receiver.wait_for(3)
        assert len(jf.refreshed) == 1

        # the watchlist queues the missing episodes of a followed series: one message
        state = ("--state-dir", str(h.state_dir))
        followed = await run_cli(*state, "anime", "follow", "frieren")
        assert followed.returncode == 0, followed.stderr.decode()
        checked = await run_cli(*state, "anime", "check")
        assert checked.returncode == 0, checked.stderr.decode()
        with trio.fail_after(90):
            while True:
                with receiver.cond:
                    queued = [n for n in receiver.received if "queued: frieren" in n["title"]]
                if queued:
                    break
                await trio.sleep(0.1)
        assert len(queued) == 1
        assert queued[0]["type"] == "info"
        assert "S01E02" in queued[0]["message"]
        assert "S01E01" not in queued[0]["message"]  # already in the library
