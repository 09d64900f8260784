"""Media-server refresh against a fake Jellyfin and a fake Plex on 127.0.0.1: the path and
token each receives, the batching (several files in one folder → one refresh), retries of a
failing server through the real engine, and a refused token shown as the server's error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from fakes.media_servers import FakeJellyfin, FakePlex, open_fake_media_server
from hathd.config import Config
from hathd.engine import running_engine
from hathd.engine.api import Job, JobState
from hathd.errors import PermanentError, RetryableError
from hathd.mediaserver.clients import jellyfin_refresh, plex_refresh
from hathd.mediaserver.config import MediaServerConfig, MediaServersConfig
from hathd.mediaserver.plugin import KIND, MediaRefresher, MediaServerPlugin
from hathd.runtime import Runtime, open_runtime


async def test_jellyfin_gets_the_path_and_the_token() -> None:
    async with (
        open_fake_media_server(FakeJellyfin(token="k1")) as jf,
        httpx.AsyncClient() as client,
    ):
        await jellyfin_refresh(client, jf.base_url, "k1", "/data/anime/Frieren/Season 01")
        req = jf.seen[-1]
        assert (req.method, req.path) == ("POST", "/Library/Media/Updated")
        assert req.headers["authorization"] == 'MediaBrowser Token="k1"'
        assert jf.refreshed == ["/data/anime/Frieren/Season 01"]
        with pytest.raises(PermanentError, match="refused the token"):
            await jellyfin_refresh(client, jf.base_url, "wrong", "/x")
        jf.fail = 1
        with pytest.raises(RetryableError, match="HTTP 500"):
            await jellyfin_refresh(client, jf.base_url, "k1", "/x")


async def test_plex_scans_the_section_holding_the_folder() -> None:
    plex = FakePlex(token="pt", sections={"1": ["/data/films"], "4": ["/data/anime", "/more"]})
    async with open_fake_media_server(plex) as px, httpx.AsyncClient() as client:
        key = await plex_refresh(client, px.base_url, "pt", "/data/anime/Frieren/Season 01")
        assert key == "4"
        assert px.scanned == [("4", "/data/anime/Frieren/Season 01")]
        assert [(r.path, r.headers["x-plex-token"]) for r in px.seen] == [
            ("/library/sections", "pt"),
            ("/library/sections/4/refresh", "pt"),
        ]
        with pytest.raises(PermanentError, match="no library holds /elsewhere"):
            await plex_refresh(client, px.base_url, "pt", "/elsewhere/x")
        with pytest.raises(PermanentError, match="refused the token"):
            await plex_refresh(client, px.base_url, "nope", "/data/films")


@asynccontextmanager
async def refresher(
    tmp_path: Path, servers: dict[str, MediaServerConfig], **fields: object
) -> AsyncIterator[tuple[Runtime, MediaRefresher]]:
    cfg = Config(
        media_servers=MediaServersConfig(
            servers=servers, debounce=0.5, retry_delays=[0.1, 0.1], **fields
        )
    )
    async with (
        open_runtime(cfg, tmp_path / "state") as rt,
        running_engine(rt) as engine,
        trio.open_nursery() as nursery,
    ):
        assert rt.engine is engine
        plugin = MediaServerPlugin()
        await plugin.setup(rt)
        assert plugin.refresher is not None
        for spec in plugin.services(rt):
            await nursery.start(spec.serve)
        yield rt, plugin.refresher
        nursery.cancel_scope.cancel()


def landed(rt: Runtime, path: str, kind: str = "anime-episode") -> None:
    """Publish what the engine publishes when a job of ``kind`` is done: an episode's result
    names its file (``path``), a transfer's its folder (``dest``, ``kind`` ``dir``)."""
    if kind == "transfer":
        result = {"dest": path, "kind": "dir", "bytes": 1, "seconds": 0.1, "code": "M"}
    else:
        result = {"path": path, "size": 1, "already_present": False}
    rt.bus.publish("jobs", "done", {"kind": kind, "target": "x", "result": result})


async def wait_jobs(rt: Runtime, count: int, state: JobState) -> list[Job]:
    assert rt.engine is not None
    with trio.fail_after(30):
        while True:
            jobs, _ = await rt.engine.list_jobs(kind=KIND, states=[str(state)], limit=100)
            if len(jobs) >= count:
                return jobs
            await trio.sleep(0.05)


async def test_several_files_in_one_folder_make_one_refresh(tmp_path: Path) -> None:
    token_file = tmp_path / "jf.token"
    token_file.write_text("from-file\n")
    jf_fake = FakeJellyfin(token="from-file")
    plex_fake = FakePlex(token="pt", sections={"2": ["/data/anime"]})
    async with (
        open_fake_media_server(jf_fake) as jf,
        open_fake_media_server(plex_fake) as px,
    ):
        servers = {
            "jf": MediaServerConfig(
                kind="jellyfin",
                url=jf.base_url,
                token_file=str(token_file),
                local_prefix="/srv/lib",
                server_prefix="/data",
            ),
            "plex": MediaServerConfig(
                kind="plex",
                url=px.base_url,
                token="pt",
                local_prefix="/srv/lib",
                server_prefix="/data",
                libraries=["/srv/lib/anime"],
            ),
        }
        async with refresher(tmp_path, servers) as (rt, r):
            for n in (1, 2, 3):
                landed(rt, f"/srv/lib/anime/Frieren/Season 01/Frieren - S01E0{n}.mp4")
            landed(rt, "/srv/lib/films/Film", kind="transfer")
            landed(rt, "/srv/lib/anime/Old/Old.mp4", kind="gallery")  # not a library kind
            await wait_jobs(rt, 3, JobState.DONE)
            await trio.sleep(0.8)  # nothing more comes
            assert sorted(jf.refreshed) == ["/data/anime/Frieren/Season 01", "/data/films/Film"]
            assert px.scanned == [("2", "/data/anime/Frieren/Season 01")]
            with trio.fail_after(10):
                while r.statistics()["servers"]["jf"]["refreshed"] < 2:
                    await trio.sleep(0.05)
            stats = r.statistics()
            assert stats["servers"]["jf"]["failed"] == 0
            assert stats["servers"]["plex"]["refreshed"] == 1
            assert stats["pending"] == 0


async def test_failures_are_retried_then_shown(tmp_path: Path) -> None:
    async with (
        open_fake_media_server(FakeJellyfin(token="good", fail=1)) as good,
        open_fake_media_server(FakeJellyfin(token="other")) as refusing,
    ):
        servers = {
            "good": MediaServerConfig(url=good.base_url, token="good"),
            "bad": MediaServerConfig(url=refusing.base_url, token="wrong"),
        }
        async with refresher(tmp_path, servers) as (rt, r):
            landed(rt, "/lib/Show/Season 02/e1.mkv")
            await wait_jobs(rt, 1, JobState.DONE)
            await wait_jobs(rt, 1, JobState.FAILED)
            assert good.refreshed == ["/lib/Show/Season 02"]
            assert sum(1 for s in good.seen if s.path == "/Library/Media/Updated") == 2
            with trio.fail_after(10):
                while r.statistics()["servers"]["bad"]["failed"] < 1:
                    await trio.sleep(0.05)
            bad = r.statistics()["servers"]["bad"]
            assert "refused the token" in bad["last_error"]
            assert refusing.refreshed == []


async def test_odd_folder_names_arrive_unchanged() -> None:
    odd = "/data/anime/A & B #1 ?x=1 100% «Ünïcode»/Season 01"
    plex = FakePlex(token="pt", sections={"3": ["/data/anime"]})
    async with (
        open_fake_media_server(plex) as px,
        open_fake_media_server(FakeJellyfin(token="k")) as jf,
        httpx.AsyncClient() as client,
    ):
        await plex_refresh(client, px.base_url, "pt", odd)
        await jellyfin_refresh(client, jf.base_url, "k", odd)
        assert px.scanned == [("3", odd)]
        assert jf.refreshed == [odd]


def test_bad_server_settings_are_config_errors(tmp_path: Path) -> None:
    import tomllib

    from hathd.config import structure
    from hathd.errors import ConfigError

    text = (
        "[media_servers.servers.tv]\n"
        'kind = "emby"\nurl = "ftp://x"\nlocal_prefix = "relative/path"\n'
    )
    with pytest.raises(ConfigError) as err:
        structure(tomllib.loads(text))
    keys = {key for key, _ in err.value.problems}
    assert {
        "media_servers.servers.tv.kind",
        "media_servers.servers.tv.url",
        "media_servers.servers.tv.local_prefix",
    } <= keys
    missing = MediaServerConfig(token_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError) as err:
        missing.read_token("tv")
    assert err.value.problems[0][0] == "media_servers.servers.tv.token_file"
