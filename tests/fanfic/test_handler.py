"""The ``fanfic`` handler with the real FanFicFare (offline test1.com adapter) and the real
calibredb, on a library created by the test."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from fanfic.support import FakeContext, Receiver, calibre_books, fanfic_job
from hathd.engine.api import JobState
from hathd.engine.retry import RetryPreset
from hathd.errors import PermanentError, RetryableError
from hathd.fanfic.calibre import Calibre
from hathd.fanfic.config import CalibreConfig, FanficConfig, NotifyConfig
from hathd.fanfic.handler import TITLE_FAILED, TITLE_SUCCESS, FanficPipeline
from hathd.notify import Notifier

FANFICFARE = [sys.executable, "-m", "fanficfare.cli"]


def make_pipeline(
    tmp_path: Path,
    urls: list[str],
    *,
    library: Path | None = None,
    presets: dict[str, RetryPreset] | None = None,
    **fanfic: Any,
) -> FanficPipeline:
    cal = CalibreConfig(library=str(library) if library else "")
    cfg = FanficConfig(enabled=True, fanficfare=FANFICFARE, calibre=cal, **fanfic)
    notifier = Notifier(NotifyConfig(urls=urls, retry_wait=0.1))
    calibre = Calibre(cal, config_dir=tmp_path / "calibre-config")
    return FanficPipeline(cfg, calibre, notifier, presets=presets)


def ctx_for(tmp_path: Path, url: str, name: str, **kw: Any) -> FakeContext:
    job_dir = tmp_path / "jobs" / name
    job_dir.mkdir(parents=True)
    return FakeContext(fanfic_job(url, **kw), job_dir)


def epub_chapters(path: Path) -> int:
    with zipfile.ZipFile(path) as zf:
        return sum(1 for n in zf.namelist() if n.startswith("OEBPS/file"))


@pytest.mark.slow
async def test_add_then_up_to_date_then_update_with_more_chapters(
    tmp_path: Path, receiver: Receiver, nursery: trio.Nursery
) -> None:
    library = tmp_path / "library"
    ini = tmp_path / "personal.ini"
    ini.write_text("[teststory:1001]\nchaptertitles:One,Two\ndateUpdated:2020-01-01\n")
    pipe = make_pipeline(tmp_path, [receiver.url], library=library, personal_ini=str(ini))
    await nursery.start(pipe.notifier.serve)
    url = "http://test1.com?sid=1001"

    first = await pipe.handle(ctx_for(tmp_path, url, "1"))
    assert first["outcome"] == "added"
    books = await trio.to_thread.run_sync(calibre_books, library)
    assert [b["identifiers"]["url"] for b in books] == [url]
    assert first["book_id"] == books[0]["id"]
    epub_v1 = Path(next(f for f in books[0]["formats"] if f.endswith(".epub")))
    assert epub_chapters(epub_v1) == 2

    second = await pipe.handle(ctx_for(tmp_path, url, "2"))
    assert second["outcome"] == "up_to_date"
    assert second["book_id"] == first["book_id"]

    # the site now has a third chapter: the book's EPUB is replaced
    ini.write_text("[teststory:1001]\nchaptertitles:One,Two,Three\ndateUpdated:2020-02-01\n")
    third = await pipe.handle(ctx_for(tmp_path, url, "3"))
    assert third["outcome"] == "updated"
    assert third["forced"] is False
    books = await trio.to_thread.run_sync(calibre_books, library)
    assert len(books) == 1, books
    assert books[0]["identifiers"]["url"] == url
    epub_v2 = Path(next(f for f in books[0]["formats"] if f.endswith(".epub")))
    assert epub_chapters(epub_v2) == 3

    # a chapter was taken down: "contains 3 chapters, more than source: 2" is forceable
    ini.write_text("[teststory:1001]\nchaptertitles:One,Two\ndateUpdated:2020-03-01\n")
    fourth = await pipe.handle(ctx_for(tmp_path, url, "4"))
    assert (fourth["outcome"], fourth["forced"]) == ("updated", True)
    books = await trio.to_thread.run_sync(calibre_books, library)
    assert len(books) == 1, books
    epub_v3 = Path(next(f for f in books[0]["formats"] if f.endswith(".epub")))
    assert epub_chapters(epub_v3) == 2

    notes = await receiver.wait_for(3)
    assert [n["title"] for n in notes] == [TITLE_SUCCESS] * 3
    assert all("Test Story Title 1001" in n["message"] for n in notes)
    assert (pipe.stats.added, pipe.stats.up_to_date, pipe.stats.updated) == (1, 1, 2)
    assert pipe.stats.forced == 1


@pytest.mark.parametrize(
    ("sid", "error", "words"),
    [
        ("666", PermanentError, "does not exist"),
        ("665", PermanentError, "is_adult:true"),
        ("668", PermanentError, "username and password"),
        ("667", RetryableError, "Error downloading Chapter"),
    ],
)
async def test_failure_outcomes(
    tmp_path: Path, sid: str, error: type[Exception], words: str
) -> None:
    pipe = make_pipeline(tmp_path, [])
    ctx = ctx_for(tmp_path, f"http://test1.com?sid={sid}", sid)
    with pytest.raises(error, match=words) as info:
        await pipe.handle(ctx)
    if error is RetryableError:
        assert not isinstance(info.value, PermanentError)
    assert not list(ctx.tmp_dir.rglob("*.epub"))


async def test_download_only_without_calibre(tmp_path: Path) -> None:
    pipe = make_pipeline(tmp_path, [])
    ctx = ctx_for(tmp_path, "http://test1.com?sid=4", "4")
    result = await pipe.handle(ctx)
    assert result["outcome"] == "downloaded"
    assert result["title"] == "Test Story Title 4"
    assert (ctx.tmp_dir / "work" / result["epub"]).is_file()
    # FanFicFare's config lookups stayed inside the job's directory
    assert (ctx.tmp_dir / "home").is_dir()


async def test_warns_before_final_try_and_on_failure(
    tmp_path: Path, receiver: Receiver, nursery: trio.Nursery
) -> None:
    # the engine's "fanfic" preset: 10 normal retries, then the final try after 12 hours
    fanfic = make_pipeline(tmp_path, [])
    assert [fanfic.final_try_after(n) for n in (1, 10, 11, 12)] == [None, None, 12.0, None]
    # a configured preset ([engine.retry.quick]): two retries, then the final try
    pipe = make_pipeline(
        tmp_path,
        [receiver.url],
        retry_preset="quick",
        presets={"quick": RetryPreset(delays=(1.0, 1.0), final_wait=9000.0)},
    )
    await nursery.start(pipe.notifier.serve)
    url = "http://test1.com?sid=667"
    # an ordinary retry: no notification
    with pytest.raises(RetryableError):
        await pipe.handle(ctx_for(tmp_path, url, "a", attempts=1))
    # the last normal try fails: the final one is announced
    with pytest.raises(RetryableError):
        await pipe.handle(ctx_for(tmp_path, url, "b", attempts=3))
    job = attrs.evolve(fanfic_job(url), state=JobState.FAILED, error="chapter 2 failed")
    await pipe.on_final(job)
    await pipe.on_final(attrs.evolve(job, state=JobState.DONE))  # success: nothing more
    notes = await receiver.wait_for(2)
    assert notes[0]["title"] == f"{TITLE_FAILED}, trying Hail-Mary in 2.50 hours."
    assert notes[0]["message"] == url
    assert notes[0]["type"] == "warning"
    assert notes[1]["title"] == TITLE_FAILED
    assert url in notes[1]["message"]
    assert notes[1]["type"] == "failure"
    assert pipe.notifier.statistics().queued == 2
