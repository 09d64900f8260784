"""The ``anime-episode`` job through the real engine, against fake hosters on 127.0.0.1 that
serve a real MP4 and a real HLS playlist made by ffmpeg."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from anime.hoster_fixtures import (
    Media,
    doodstream_page,
    filemoon_page,
    make_media,
    streamtape_page,
    vidoza_page,
    voe_page,
    voe_redirect_page,
)
from fakes.anime_hosters import FakeAnimeSite, open_fake_anime_site
from hathd.anime.episode import (
    KIND,
    EpisodeLanded,
    dest_parts,
    make_episode_handler,
    remove_partials,
    validate_episode_spec,
)
from hathd.anime.gate import DomainGate
from hathd.anime.health import HosterHealth
from hathd.config import Config
from hathd.engine import Engine, running_engine
from hathd.engine.api import InvalidInput, Job, JobSpec, JobState
from hathd.engine.config import EngineConfig, RetryPresetConfig
from hathd.engine.lanes import LaneSettings
from hathd.errors import RetryableError
from hathd.runtime import open_runtime

PROVIDER = "aniworld.test"
"""The job's domain in these tests (the fakes all listen on 127.0.0.1, which then counts as a
hoster's domain, not the provider's)."""
DEST = "Frieren (2023)/Season 01/Frieren - S01E01 - The Journey's End"
FAST_RETRY = RetryPresetConfig(delays=[0.05], jitter=0.0, final_wait=None)


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return make_media(tmp_path_factory.mktemp("media"))


@attrs.define
class Library:
    engine: Engine
    root: Path
    health: HosterHealth
    site: FakeAnimeSite
    media: Media
    landed: list[EpisodeLanded]
    gate: RecordingGate

    def serve_media(self) -> None:
        """The MP4 at ``/media/ep.mp4`` and the HLS playlist under ``/hls/``."""
        self.site.media("/media/ep.mp4", self.media.mp4)
        self.site.media(
            "/hls/index.m3u8", self.media.playlist.encode(), "application/vnd.apple.mpegurl"
        )
        for name, data in self.media.segments.items():
            self.site.media(f"/hls/{name}", data, "video/mp2t")

    def hoster(self, n: int, path: str, html: str) -> str:
        """A provider redirect ``/redirect/<n>`` to hoster page ``path``; returns its URL."""
        self.site.page(path, html)
        self.site.redirect(f"/redirect/{n}", self.site.url(path))
        return self.site.url(f"/redirect/{n}")

    async def run(self, candidates: list[dict[str, str]], dest: str = DEST) -> Job:
        spec = JobSpec(
            kind=KIND,
            target=self.site.url("/anime/stream/frieren/staffel-1/episode-1"),
            domain=PROVIDER,
            params={
                "series_key": "frieren",
                "season": 1,
                "episode": 1,
                "dest": dest,
                "candidates": candidates,
            },
        )
        submitted = await self.engine.submit(spec)
        return await self.engine.wait_final(submitted.job.id, timeout=60)

    def files(self) -> list[str]:
        """Every file under the library root, relative, sorted."""
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())


class RecordingGate(DomainGate):
    """A :class:`DomainGate` that logs the domain of every request it admits."""

    def __init__(self) -> None:
        super().__init__(default=LaneSettings(concurrency=4, rate=50.0, burst=20))
        self.admitted: list[str] = []

    @asynccontextmanager
    async def request(self, domain: str) -> AsyncIterator[None]:
        async with super().request(domain):
            self.admitted.append(domain)
            yield


@asynccontextmanager
async def open_library(
    tmp_path: Path, media: Media, health: HosterHealth | None = None
) -> AsyncIterator[Library]:
    root = tmp_path / "library"
    root.mkdir()
    health = health or HosterHealth()
    landed: list[EpisodeLanded] = []
    gate = RecordingGate()
    config = Config(engine=EngineConfig(workers=2, retry={"default": FAST_RETRY}))
    async with (
        open_fake_anime_site() as site,
        open_runtime(config, tmp_path / "state") as rt,
        running_engine(rt) as engine,
    ):

        async def on_landed(event: EpisodeLanded) -> None:
            landed.append(event)

        async def on_final(job: Job) -> None:
            if job.state in (JobState.FAILED, JobState.CANCELLED):
                await remove_partials(root, job)

        handler = make_episode_handler(
            root=root,
            health=health,
            on_landed=on_landed,
            gate=gate,
            save_checkpoint=engine.save_checkpoint,
        )
        engine.register(KIND, handler, validate=validate_episode_spec, on_final=on_final)
        yield Library(engine, root, health, site, media, landed, gate)


def probe(path: Path) -> dict[str, Any]:
    ffprobe = shutil.which("ffprobe")
    assert ffprobe is not None, "ffprobe (package ffmpeg) is required"
    out = subprocess.run(
        [ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        check=True,
        capture_output=True,
    )
    data: dict[str, Any] = json.loads(out.stdout)
    return data


async def test_direct_episode_from_vidoza_lands_atomically(tmp_path: Path, media: Media) -> None:
    async with open_library(tmp_path, media) as lib:
        lib.serve_media()
        url = lib.hoster(1, "/vidoza/embed-abc.html", vidoza_page(lib.site.url("/media/ep.mp4")))
        job = await lib.run([{"hoster": "Vidoza", "language": "de-dub", "url": url}])
        assert job.state is JobState.DONE, job.error
        final = lib.root / f"{DEST}.mp4"
        assert job.result is not None
        assert job.result["path"] == str(final)
        assert job.result["size"] == len(media.mp4)
        assert (job.result["hoster"], job.result["language"]) == ("vidoza", "de-dub")
        assert final.read_bytes() == media.mp4
        assert lib.files() == [f"{DEST}.mp4"]  # no part file left
        assert lib.landed == [
            EpisodeLanded("frieren", 1, 1, final, len(media.mp4), "vidoza", "de-dub")
        ]
        media_requests = [h for _, t, h in lib.site.requests if t == "/media/ep.mp4"]
        assert media_requests[0]["referer"] == lib.site.url("/")
        # provider redirect, hoster page, media file: each request passed the politeness gate
        assert len(lib.site.requests) == 3
        assert lib.gate.admitted == ["127.0.0.1"] * 3
        status = lib.health.status("vidoza")
        assert (status.attempts, status.successes) == (1, 1)
        assert status.latency is not None


async def test_doodstream_and_streamtape_resolve_through_their_extra_requests(
    tmp_path: Path, media: Media
) -> None:
    async with open_library(tmp_path, media) as lib:
        lib.serve_media()
        lib.site.text("/pass_md5/abc/tok42", lib.site.url("/dood-cdn/abc"))
        lib.site.media("/dood-cdn/abc", media.mp4, prefix=True, query=("token", "tok42"))
        dood = lib.hoster(1, "/dood/e/abc", doodstream_page("/pass_md5/abc/tok42", "tok42"))
        job = await lib.run([{"hoster": "Doodstream", "language": "de-sub", "url": dood}])
        assert job.state is JobState.DONE, job.error
        assert (lib.root / f"{DEST}.mp4").read_bytes() == media.mp4

        lib.site.redirect("/get_video", lib.site.url("/media/ep.mp4"))
        tape = lib.hoster(
            2,
            "/streamtape/e/xyz",
            streamtape_page(lib.site.url("/get_video?id=xyz&expires=1&ip=AB&token="), "T0K"),
        )
        other = DEST.replace("S01E01", "S01E02")
        job = await lib.run([{"hoster": "Streamtape", "language": "de-dub", "url": tape}], other)
        assert job.state is JobState.DONE, job.error
        assert (lib.root / f"{other}.mp4").read_bytes() == media.mp4
        gets = [t for _, t, _ in lib.site.requests if t.startswith("/get_video")]
        assert gets == ["/get_video?id=xyz&expires=1&ip=AB&token=T0K&stream=1"]


async def test_hls_episodes_from_filemoon_and_voe_are_remuxed_to_mp4(
    tmp_path: Path, media: Media
) -> None:
    async with open_library(tmp_path, media) as lib:
        lib.serve_media()
        playlist = lib.site.url("/hls/index.m3u8")
        moon = lib.hoster(1, "/filemoon/e/m00n", filemoon_page(playlist))
        job = await lib.run([{"hoster": "Filemoon", "language": "ja-sub", "url": moon}])
        assert job.state is JobState.DONE, job.error
        final = lib.root / f"{DEST}.mp4"
        info = probe(final)
        assert info["format"]["format_name"].startswith("mov,mp4")
        assert {s["codec_type"] for s in info["streams"]} == {"video", "audio"}
        assert float(info["format"]["duration"]) == pytest.approx(3.0, abs=0.5)
        assert all(lib.site.count(f"/hls/{name}") == 1 for name in media.segments)
        assert lib.files() == [f"{DEST}.mp4"]

        lib.site.page("/voe/e/mirror1", voe_page(playlist))
        voe = lib.hoster(2, "/voe/e/first1", voe_redirect_page(lib.site.url("/voe/e/mirror1")))
        other = DEST.replace("S01E01", "S01E02")
        job = await lib.run([{"hoster": "VOE", "language": "de-dub", "url": voe}], other)
        assert job.state is JobState.DONE, job.error
        assert probe(lib.root / f"{other}.mp4")["format"]["format_name"].startswith("mov,mp4")


async def test_a_direct_link_that_answers_a_playlist_is_fetched_as_hls(
    tmp_path: Path, media: Media
) -> None:
    async with open_library(tmp_path, media) as lib:
        lib.serve_media()
        lib.site.media("/hls/plain.m3u8", media.playlist.encode(), "application/octet-stream")
        url = lib.hoster(1, "/vidoza/embed-p.html", vidoza_page(lib.site.url("/hls/plain.m3u8")))
        job = await lib.run([{"hoster": "vidoza", "language": "de-dub", "url": url}])
        assert job.state is JobState.DONE, job.error
        final = lib.root / f"{DEST}.mp4"
        assert {s["codec_type"] for s in probe(final)["streams"]} == {"video", "audio"}
        assert lib.files() == [f"{DEST}.mp4"]


async def test_a_hoster_answering_html_fails_over_and_leaves_nothing_partial(
    tmp_path: Path, media: Media
) -> None:
    async with open_library(tmp_path, media) as lib:
        lib.serve_media()
        lib.site.page(
            "/media/trap.mp4", "<!DOCTYPE html><html><body>File was deleted</body></html>"
        )
        lib.site.media("/media/disguised.mp4", b"<html><body>" + b"x" * 4000 + b"</body></html>")
        bad1 = lib.hoster(1, "/vidoza/embed-1.html", vidoza_page(lib.site.url("/media/trap.mp4")))
        lib.site.page("/voe/e/bad2", voe_page(lib.site.url("/media/disguised.mp4")))
        lib.site.redirect("/redirect/2", lib.site.url("/voe/e/bad2"))
        good = lib.hoster(3, "/vidoza/embed-3.html", vidoza_page(lib.site.url("/media/ep.mp4")))
        job = await lib.run(
            [
                {"hoster": "vidoza", "language": "de-dub", "url": bad1},
                {"hoster": "voe", "language": "de-dub", "url": lib.site.url("/redirect/2")},
                {"hoster": "vidoza", "language": "de-sub", "url": good},
            ]
        )
        assert job.state is JobState.DONE, job.error
        assert job.result is not None
        assert job.result["language"] == "de-sub"
        assert (lib.root / f"{DEST}.mp4").read_bytes() == media.mp4
        assert lib.files() == [f"{DEST}.mp4"]
        assert "text/html" in (lib.health.status("vidoza").last_error or "")
        assert "did not send video" in (lib.health.status("voe").last_error or "")


async def test_an_hls_playlist_with_missing_segments_fails_over(
    tmp_path: Path, media: Media
) -> None:
    async with open_library(tmp_path, media) as lib:
        lib.serve_media()
        broken = media.playlist.replace("seg001.ts", "gone001.ts")
        lib.site.media("/hls-broken/index.m3u8", broken.encode(), "application/vnd.apple.mpegurl")
        for name, data in media.segments.items():
            lib.site.media(f"/hls-broken/{name}", data, "video/mp2t")
        moon = lib.hoster(
            1, "/filemoon/e/broken", filemoon_page(lib.site.url("/hls-broken/index.m3u8"))
        )
        good = lib.hoster(2, "/vidoza/embed-2.html", vidoza_page(lib.site.url("/media/ep.mp4")))
        job = await lib.run(
            [
                {"hoster": "filemoon", "language": "ja-sub", "url": moon},
                {"hoster": "vidoza", "language": "de-sub", "url": good},
            ]
        )
        assert job.state is JobState.DONE, job.error
        assert job.result is not None
        assert job.result["hoster"] == "vidoza"
        assert (lib.root / f"{DEST}.mp4").read_bytes() == media.mp4
        assert lib.files() == [f"{DEST}.mp4"]
        assert "HLS download failed" in (lib.health.status("filemoon").last_error or "")
        assert lib.site.count("/hls-broken/gone001.ts") >= 1


async def test_every_hoster_failing_fails_the_job_with_each_reason_and_no_file(
    tmp_path: Path, media: Media
) -> None:
    async with open_library(tmp_path, media) as lib:
        lib.site.redirect("/redirect/loop", lib.site.url("/redirect/loop2"))
        lib.site.redirect("/redirect/loop2", lib.site.url("/redirect/loop"))
        lib.site.raw(
            "/media/huge.mp4",
            b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 2147483648\r\n"
            b"Connection: close\r\n\r\n" + media.mp4[:4096],
        )
        huge = lib.hoster(2, "/vidoza/embed-2.html", vidoza_page(lib.site.url("/media/huge.mp4")))
        job = await lib.run(
            [
                {"hoster": "voe", "language": "de-dub", "url": lib.site.url("/redirect/loop")},
                {"hoster": "vidoza", "language": "de-dub", "url": huge},
                {"hoster": "megaupnowhere", "language": "de-dub", "url": huge},
            ]
        )
        assert job.state is JobState.FAILED
        assert job.attempts == 2  # one retry (FAST_RETRY), then failed
        error = job.error or ""
        assert "redirect loop at" in error
        assert "ended after 4096 of announced 2147483648 bytes" in error
        assert "megaupnowhere (de-dub): no resolver" in error
        with trio.fail_after(10):  # the final hook runs just after the state is written
            while lib.files():
                await trio.sleep(0.01)
        assert lib.files() == []  # the part file went with the failed job
        assert not (lib.root / f"{DEST}.mp4").exists()
        assert lib.site.count("/media/huge.mp4") == 2


@attrs.define
class Ctx:
    """A job context for calling the handler directly (one try, no engine)."""

    job: Job
    tmp_dir: Path
    reports: list[tuple[int, int | None]] = attrs.field(factory=list)

    def progress(self, done: int, total: int | None = None, *, message: str | None = None) -> None:
        self.reports.append((done, total))


async def test_a_2_gib_content_length_on_a_tiny_body_is_neither_done_nor_preallocated(
    tmp_path: Path, media: Media
) -> None:
    root = tmp_path / "library"
    root.mkdir()
    async with open_fake_anime_site() as site:
        site.raw(
            "/media/huge.mp4",
            b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 2147483648\r\n"
            b"Connection: close\r\n\r\n" + media.mp4[:4096],
        )
        site.page("/vidoza/e.html", vidoza_page(site.url("/media/huge.mp4")))
        site.redirect("/redirect/1", site.url("/vidoza/e.html"))
        params = {
            "series_key": "frieren",
            "season": 1,
            "episode": 1,
            "dest": DEST,
            "candidates": [{"hoster": "vidoza", "language": "de", "url": site.url("/redirect/1")}],
        }
        job = Job(
            "0123456789abcdef", KIND, site.url("/ep"), "127.0.0.1", JobState.RUNNING, params=params
        )
        ctx = Ctx(job, tmp_path / "tmp")
        handler = make_episode_handler(root=root, health=HosterHealth(), on_landed=_never)
        with pytest.raises(RetryableError, match="ended after 4096 of announced 2147483648"):
            await handler(ctx)
    parts = [p for p in root.rglob("*") if p.is_file()]
    assert [p.name.endswith(".0123456789abcdef.part") for p in parts] == [True]
    assert parts[0].stat().st_size == 4096  # what arrived, nothing reserved for the rest
    assert parts[0].stat().st_blocks * 512 < 1024 * 1024
    assert all(total == 2147483648 for _, total in ctx.reports)


async def test_a_trickling_hoster_page_fails_its_candidate_in_time(
    tmp_path: Path, media: Media
) -> None:
    root = tmp_path / "library"
    root.mkdir()
    async with open_fake_anime_site() as site:
        site.media("/media/ep.mp4", media.mp4)
        site.trickle("/vidoza/slow.html", vidoza_page(site.url("/media/ep.mp4")), 0.05)
        site.redirect("/redirect/1", site.url("/vidoza/slow.html"))
        site.page("/vidoza/fast.html", vidoza_page(site.url("/media/ep.mp4")))
        site.redirect("/redirect/2", site.url("/vidoza/fast.html"))
        params = {
            "series_key": "frieren",
            "season": 1,
            "episode": 1,
            "dest": DEST,
            "candidates": [
                {"hoster": "vidoza", "language": "de", "url": site.url("/redirect/1")},
                {"hoster": "streamtape", "language": "de", "url": site.url("/redirect/2")},
            ],
        }
        job = Job(
            "0123456789abcdef", KIND, site.url("/ep"), PROVIDER, JobState.RUNNING, params=params
        )
        health = HosterHealth()
        handler = make_episode_handler(
            root=root, health=health, on_landed=_never, page_timeout=0.5, timeout=5.0
        )
        with trio.fail_after(10), pytest.raises(RetryableError) as err:
            await handler(Ctx(job, tmp_path / "tmp"))
    assert "did not answer completely within 0.5 s" in str(err.value)
    assert "streamtape (de): streamtape: page markup changed: robotlink not found" in str(err.value)
    assert health.status("vidoza").consecutive_failures == 1


async def test_a_complete_part_file_from_an_interrupted_try_is_placed_without_refetching(
    tmp_path: Path, media: Media
) -> None:
    root = tmp_path / "library"
    folder = root / DEST.rsplit("/", 1)[0]
    folder.mkdir(parents=True)
    part = folder / f".{DEST.rsplit('/', 1)[1]}.0123456789abcdef.part"
    part.write_bytes(media.mp4)
    async with open_fake_anime_site() as site:
        site.media("/media/ep.mp4", media.mp4)
        site.page("/vidoza/e.html", vidoza_page(site.url("/media/ep.mp4")))
        site.redirect("/redirect/1", site.url("/vidoza/e.html"))
        url = site.url("/redirect/1")
        params = {
            "series_key": "frieren",
            "season": 1,
            "episode": 1,
            "dest": DEST,
            "candidates": [{"hoster": "vidoza", "language": "de", "url": url}],
        }
        etag = '"' + hashlib.sha256(media.mp4).hexdigest()[:16] + '"'
        job = Job(
            "0123456789abcdef",
            KIND,
            site.url("/ep"),
            "127.0.0.1",
            JobState.RUNNING,
            params=params,
            checkpoint={"candidate": url, "validator": etag},
        )
        landed: list[EpisodeLanded] = []

        async def on_landed(event: EpisodeLanded) -> None:
            landed.append(event)

        handler = make_episode_handler(root=root, health=HosterHealth(), on_landed=on_landed)
        result = await handler(Ctx(job, tmp_path / "tmp"))
        asked = [h for _, t, h in site.requests if t == "/media/ep.mp4"]
    assert result is not None
    assert result["size"] == len(media.mp4)
    assert asked[0]["range"] == f"bytes={len(media.mp4)}-"  # answered 416 */size
    assert (root / f"{DEST}.mp4").read_bytes() == media.mp4
    assert not part.exists()
    assert len(landed) == 1


async def test_a_part_file_left_beside_a_placed_episode_is_removed(tmp_path: Path) -> None:
    root = tmp_path / "library"
    folder = root / DEST.rsplit("/", 1)[0]
    folder.mkdir(parents=True)
    name = DEST.rsplit("/", 1)[1]
    (folder / f"{name}.mp4").write_bytes(b"\x00\x00\x00\x20ftypisom")
    (folder / f".{name}.0123456789abcdef.part").write_bytes(b"\x00\x00\x00\x20ftypisom")
    params = {
        "series_key": "frieren",
        "season": 1,
        "episode": 1,
        "dest": DEST,
        "candidates": [{"hoster": "vidoza", "language": "de", "url": "http://127.0.0.1:9/r/1"}],
    }
    job = Job(
        "0123456789abcdef",
        KIND,
        "http://127.0.0.1:9/ep",
        PROVIDER,
        JobState.RUNNING,
        params=params,
        checkpoint={"hoster": "vidoza", "language": "de"},
    )
    landed: list[EpisodeLanded] = []

    async def on_landed(event: EpisodeLanded) -> None:
        landed.append(event)

    handler = make_episode_handler(root=root, health=HosterHealth(), on_landed=on_landed)
    result = await handler(Ctx(job, tmp_path / "tmp"))
    assert result is not None
    assert result["already_present"] is True
    assert (result["hoster"], result["language"]) == ("vidoza", "de")
    assert sorted(p.name for p in folder.iterdir()) == [f"{name}.mp4"]
    assert [e.path for e in landed] == [folder / f"{name}.mp4"]


async def _never(event: EpisodeLanded) -> None:
    raise AssertionError(f"nothing should land: {event}")


async def test_hls_progress_reaches_the_job_and_a_pause_stops_the_worker(
    tmp_path: Path, media: Media
) -> None:
    root = tmp_path / "library"
    root.mkdir()
    async with open_fake_anime_site() as site:
        site.media("/hls/index.m3u8", media.playlist.encode(), "application/vnd.apple.mpegurl")
        for name, data in media.segments.items():
            site.media(f"/hls/{name}", data, "video/mp2t")
        site.page("/filemoon/e/1", filemoon_page(site.url("/hls/index.m3u8")))
        site.redirect("/redirect/1", site.url("/filemoon/e/1"))
        params = {
            "series_key": "frieren",
            "season": 1,
            "episode": 1,
            "dest": DEST,
            "candidates": [
                {"hoster": "filemoon", "language": "ja", "url": site.url("/redirect/1")}
            ],
        }
        job = Job(
            "0123456789abcdef", KIND, site.url("/ep"), "127.0.0.1", JobState.RUNNING, params=params
        )
        landed: list[EpisodeLanded] = []

        async def on_landed(event: EpisodeLanded) -> None:
            landed.append(event)

        handler = make_episode_handler(root=root, health=HosterHealth(), on_landed=on_landed)
        ctx = Ctx(job, tmp_path / "tmp1")
        result = await handler(ctx)
        assert result is not None
        assert result["hoster"] == "filemoon"
        assert ctx.reports
        assert ctx.reports[-1][0] > 0
        assert [e.path for e in landed] == [root / f"{DEST}.mp4"]

        # a pause cancels the try: the worker thread stops at its next progress hook
        gate = trio.Event()
        release = trio.Event()

        def hold(target: str) -> None:
            if target == "/hls/seg001.ts":
                gate.set()

        site.hook = hold
        # the second segment now takes seconds: a stopped worker never asks for the third
        site.slow_media("/hls/seg001.ts", media.segments["seg001.ts"], pace=0.05, piece=1024)
        seg002_before = site.count("/hls/seg002.ts")
        other = {**params, "dest": DEST.replace("S01E01", "S01E02")}
        job2 = attrs.evolve(job, params=other)
        ctx2 = Ctx(job2, tmp_path / "tmp2")
        with trio.move_on_after(30) as scope:
            async with trio.open_nursery() as nursery:

                async def run() -> None:
                    with trio.CancelScope() as inner:
                        cancel_scopes.append(inner)
                        await handler(ctx2)
                    release.set()

                cancel_scopes: list[trio.CancelScope] = []
                nursery.start_soon(run)
                await gate.wait()
                cancel_scopes[0].cancel()
                await release.wait()
        assert not scope.cancelled_caught
        assert not (root / f"{other['dest']}.mp4").exists()
        # the handler returns only once its worker thread has ended: had the thread gone on
        # instead of stopping at its next hook, it would have fetched seg002 by then
        assert site.count("/hls/seg002.ts") == seg002_before


async def test_a_cut_download_resumes_with_range_on_the_next_try(
    tmp_path: Path, media: Media
) -> None:
    async with open_library(tmp_path, media) as lib:
        etag = '"' + hashlib.sha256(media.mp4).hexdigest()[:16] + '"'
        half = len(media.mp4) // 2
        lib.site.raw(
            "/media/cut.mp4",
            f"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nETag: {etag}\r\n"
            f"Content-Length: {len(media.mp4)}\r\nConnection: close\r\n\r\n".encode()
            + media.mp4[:half],
        )

        def second_time(target: str) -> None:
            if target == "/media/cut.mp4" and lib.site.count(target) == 2:
                lib.site.media("/media/cut.mp4", media.mp4)

        lib.site.hook = second_time
        url = lib.hoster(1, "/vidoza/embed-c.html", vidoza_page(lib.site.url("/media/cut.mp4")))
        job = await lib.run([{"hoster": "vidoza", "language": "de-dub", "url": url}])
        assert job.state is JobState.DONE, job.error
        assert job.attempts == 2
        assert (lib.root / f"{DEST}.mp4").read_bytes() == media.mp4
        second = [h for _, t, h in lib.site.requests if t == "/media/cut.mp4"][1]
        assert second["range"] == f"bytes={half}-"
        assert second["if-range"] == etag


async def test_a_paused_download_keeps_its_part_and_resumes_with_range(
    tmp_path: Path, media: Media
) -> None:
    async with open_library(tmp_path, media) as lib:
        lib.site.slow_media("/media/slow.mp4", media.mp4, pace=0.03, piece=1024)
        url = lib.hoster(1, "/vidoza/embed-s.html", vidoza_page(lib.site.url("/media/slow.mp4")))
        spec = JobSpec(
            kind=KIND,
            target=lib.site.url("/ep"),
            domain="127.0.0.1",
            params={
                "series_key": "frieren",
                "season": 1,
                "episode": 1,
                "dest": DEST,
                "candidates": [{"hoster": "vidoza", "language": "de-dub", "url": url}],
            },
        )
        job_id = (await lib.engine.submit(spec)).job.id
        part = lib.root / DEST.rsplit("/", 1)[0] / f".{DEST.rsplit('/', 1)[1]}.{job_id}.part"
        with trio.fail_after(30):
            while not (part.exists() and part.stat().st_size >= 8192):
                await trio.sleep(0.02)
        paused = await lib.engine.pause_job(job_id)
        assert paused.state is JobState.PAUSED
        kept = part.stat().st_size
        assert 0 < kept < len(media.mp4)
        assert not (lib.root / f"{DEST}.mp4").exists()
        lib.site.media("/media/slow.mp4", media.mp4)  # full speed from now on
        await lib.engine.resume_job(job_id)
        job = await lib.engine.wait_final(job_id, timeout=60)
        assert job.state is JobState.DONE, job.error
        assert (lib.root / f"{DEST}.mp4").read_bytes() == media.mp4
        second = [h for _, t, h in lib.site.requests if t == "/media/slow.mp4"][-1]
        assert second["range"] == f"bytes={kept}-"
        assert lib.files() == [f"{DEST}.mp4"]


async def test_a_hoster_in_cool_down_is_skipped(tmp_path: Path, media: Media) -> None:
    health = HosterHealth(failure_threshold=1, cooldown=600.0)
    async with open_library(tmp_path, media, health) as lib:
        lib.serve_media()
        lib.site.page("/voe/e/broken", "<html><body>We changed everything</body></html>")
        lib.site.redirect("/redirect/1", lib.site.url("/voe/e/broken"))
        good = lib.hoster(2, "/vidoza/embed-2.html", vidoza_page(lib.site.url("/media/ep.mp4")))
        candidates = [
            {"hoster": "voe", "language": "de-dub", "url": lib.site.url("/redirect/1")},
            {"hoster": "vidoza", "language": "de-dub", "url": good},
        ]
        job = await lib.run(candidates)
        assert job.state is JobState.DONE, job.error
        assert "voe: page markup changed" in (lib.health.status("voe").last_error or "")
        assert not lib.health.available("voe")
        job = await lib.run(candidates, DEST.replace("S01E01", "S01E02"))
        assert job.state is JobState.DONE, job.error
        assert lib.site.count("/voe/e/broken") == 1  # set aside, not asked again


async def test_a_provider_outage_is_not_held_against_the_hosters(
    tmp_path: Path, media: Media
) -> None:
    root = tmp_path / "library"
    root.mkdir()
    health = HosterHealth(failure_threshold=1)
    async with open_fake_anime_site() as site:
        params = {
            "series_key": "frieren",
            "season": 1,
            "episode": 1,
            "dest": DEST,
            "candidates": [
                {"hoster": "voe", "language": "de", "url": site.url("/redirect/1")},
                {"hoster": "vidoza", "language": "de", "url": site.url("/redirect/2")},
            ],
        }
        # the provider is this server: its /redirect/… answer 404
        job = Job(
            "0123456789abcdef", KIND, site.url("/ep"), "127.0.0.1", JobState.RUNNING, params=params
        )
        handler = make_episode_handler(root=root, health=health, on_landed=_never)
        with pytest.raises(RetryableError, match=r"HTTP 404 for .*/redirect/2"):
            await handler(Ctx(job, tmp_path / "tmp"))
    assert health.available("voe")
    assert health.available("vidoza")
    assert health.status("voe").attempts == 0


async def test_an_episode_already_in_the_library_is_not_fetched_again(
    tmp_path: Path, media: Media
) -> None:
    async with open_library(tmp_path, media) as lib:
        final = lib.root / f"{DEST}.mkv"
        final.parent.mkdir(parents=True)
        final.write_bytes(b"\x1a\x45\xdf\xa3 existing")
        url = lib.hoster(1, "/vidoza/embed-1.html", vidoza_page(lib.site.url("/media/ep.mp4")))
        job = await lib.run([{"hoster": "vidoza", "language": "de-dub", "url": url}])
        assert job.state is JobState.DONE, job.error
        assert job.result is not None
        assert job.result["already_present"] is True
        assert job.result["path"] == str(final)
        assert lib.site.requests == []


async def test_only_unknown_hosters_fail_permanently(tmp_path: Path, media: Media) -> None:
    async with open_library(tmp_path, media) as lib:
        job = await lib.run(
            [{"hoster": "nowhere", "language": "de-dub", "url": lib.site.url("/redirect/1")}]
        )
        assert job.state is JobState.FAILED
        assert job.attempts == 1
        assert "no usable hoster" in (job.error or "")


@given(dest=st.text(max_size=60))
def test_an_accepted_dest_never_leaves_the_library_root(dest: str) -> None:
    try:
        parts = dest_parts(dest)
    except InvalidInput as exc:
        refused: str | None = exc.field
    else:
        refused = None
    if refused is not None:
        assert refused == "params.dest"
        return
    root = Path("/library")
    assert os.path.normpath(root.joinpath(*parts)).startswith("/library/")
    assert all(p not in ("", ".", "..") and "/" not in p for p in parts)
    assert not any(ord(ch) < 32 for ch in dest)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"dest": "/etc/passwd"}, "params.dest"),
        ({"dest": "Show/../../escape"}, "params.dest"),
        ({"dest": "Show/Season 01/ep\x07"}, "params.dest"),
        ({"dest": "Show//ep"}, "params.dest"),
        ({"dest": ""}, "params.dest"),
        ({"season": -1}, "params.season"),
        ({"episode": True}, "params.episode"),
        ({"series_key": ""}, "params.series_key"),
        ({"candidates": []}, "params.candidates"),
        (
            {"candidates": [{"hoster": "voe", "language": "de", "url": "ftp://x/y"}]},
            "params.candidates[0].url",
        ),
        (
            {"candidates": [{"hoster": "", "language": "de", "url": "http://x/y"}]},
            "params.candidates[0].hoster",
        ),
    ],
)
def test_bad_submissions_name_the_field(params: dict[str, Any], field: str) -> None:
    good: dict[str, Any] = {
        "series_key": "frieren",
        "season": 1,
        "episode": 1,
        "dest": DEST,
        "candidates": [{"hoster": "voe", "language": "de-dub", "url": "http://p.example/r/1"}],
    }
    validate_episode_spec(JobSpec(KIND, "http://p.example/ep", "p.example", good))
    with pytest.raises(InvalidInput) as err:
        validate_episode_spec(JobSpec(KIND, "http://p.example/ep", "p.example", {**good, **params}))
    assert err.value.field == field


async def test_a_symlinked_library_folder_is_refused_without_writing(
    tmp_path: Path, media: Media
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    async with open_library(tmp_path, media) as lib:
        lib.serve_media()
        (lib.root / "Frieren (2023)").symlink_to(outside)
        url = lib.hoster(1, "/vidoza/embed-1.html", vidoza_page(lib.site.url("/media/ep.mp4")))
        job = await lib.run([{"hoster": "vidoza", "language": "de-dub", "url": url}])
        assert job.state is JobState.FAILED
        assert "not a plain folder" in (job.error or "")
        assert list(outside.iterdir()) == []
        assert lib.site.requests == []
