"""The library in-process: real store, real fake site over HTTP, the event bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from fakes.anime_site import FakeProviderSite, catalogue, open_fake_provider
from hathd.anime.config import AnimeConfig
from hathd.anime.fetch import ProviderFetcher
from hathd.anime.gate import DomainGate
from hathd.anime.library import AnimeLibrary, LibraryError, parse_range
from hathd.anime.providers.aniworld import aniworld, sto
from hathd.anime.providers.base import ProviderError
from hathd.anime.store import MIGRATIONS, AnimeStore
from hathd.engine.lanes import LaneSettings
from hathd.events import EventBus
from hathd.store import open_store


@pytest.fixture
async def site() -> AsyncIterator[FakeProviderSite]:
    async with open_fake_provider(FakeProviderSite(series=catalogue())) as fake:
        yield fake


@pytest.fixture
async def library(site: FakeProviderSite, tmp_path: Path) -> AsyncIterator[AnimeLibrary]:
    async with open_store(tmp_path / "db.sqlite3") as store:
        db = AnimeStore(store)
        assert await db.migrate() == len(MIGRATIONS)
        assert await db.migrate() == len(MIGRATIONS)  # idempotent
        fetcher = ProviderFetcher(DomainGate(default=LaneSettings(concurrency=1, rate=50, burst=1)))
        root = tmp_path / "lib"
        root.mkdir()
        lib = AnimeLibrary(
            config=AnimeConfig(),
            root=root,
            db=db,
            providers=[aniworld(site.base_url), sto("http://127.0.0.2:1")],
            fetcher=fetcher,
            engine=None,
            bus=EventBus(),
        )
        yield lib
        await fetcher.aclose()


async def test_refresh_stores_series_and_offered_episodes(library: AnimeLibrary) -> None:
    series = await library.refresh("frieren")
    assert (series.name, series.year, series.folder) == ("Frieren", 2023, "Frieren (2023)")
    eps = await library.db.episodes("frieren")
    assert [e.code for e in eps] == [
        "S00E01",
        "S01E01",
        "S01E02",
        "S01E03",
        "S01E04",
        "S02E01",
        "S02E02",
    ]
    assert eps[0].languages == ("de-sub",)
    assert len(await library.db.missing("frieren")) == 7
    with pytest.raises(LibraryError, match="job engine"):
        await library.queue("frieren")


async def test_scan_progress_is_published_per_folder(library: AnimeLibrary) -> None:
    await library.refresh("frieren")
    season = library.root / "Frieren (2023)" / "Season 01"
    season.mkdir(parents=True)
    (season / "Frieren - S01E02 - x.mp4").write_bytes(b"12345")
    keyed = library.root / "My Copy"
    keyed.mkdir()
    (keyed / "key").write_text("aniworld.to acdc-live\n")
    (keyed / "AC - S01E01.mkv").write_bytes(b"1")
    async with library.bus.subscribe(["anime"]) as sub:
        summary = await library.scan()
        events = []
        while True:
            try:
                event = sub._recv.receive_nowait()
            except trio.WouldBlock:
                break
            events.append((event.type, event.data.get("folder"), event.data.get("index")))
    assert summary == {"folders": 2, "matched": 2, "unmatched": [], "errors": []}
    assert events == [
        ("scan-progress", "Frieren (2023)", 1),
        ("scan-progress", "My Copy", 2),
        ("scan-done", None, None),
    ]
    assert [e.code for e in await library.db.missing("frieren")] == [
        "S00E01",
        "S01E01",
        "S01E03",
        "S01E04",
        "S02E01",
        "S02E02",
    ]
    local = await library.db.series("acdc-live")
    assert local is not None
    assert local.folder == "My Copy"
    # the provider read later keeps the folder the files are in
    series = await library.refresh("acdc-live")
    assert series.folder == "My Copy"
    assert (
        library.dest(series, 1, 2, "x") == "My Copy/Season 01/AC DC .. Live \U0001f3b8 - S01E02 - x"
    )


async def test_a_redirect_loop_is_an_error(library: AnimeLibrary, site: FakeProviderSite) -> None:
    site.loop = True
    with pytest.raises(ProviderError, match="redirect loop at"):
        await library.fetcher.get_text(f"{site.base_url}/redirect/1000")
    with pytest.raises(ProviderError, match="HTTP 404"):
        await library.refresh("no-such-show")


async def test_search_errors(library: AnimeLibrary, site: FakeProviderSite) -> None:
    hits = await library.search("frie", "aniworld.to")
    assert [h.key for h in hits] == ["frieren"]
    site.changed.add("search")
    with pytest.raises(ProviderError, match="search page markup changed"):
        await library.search("frie", "aniworld.to")
    with pytest.raises(LibraryError, match=r"unknown 'x\.to'"):
        await library.search("frie", "x.to")


def test_episode_ranges() -> None:
    assert parse_range("1-3,7") == {1, 2, 3, 7}
    assert parse_range(None) is None
    for bad in ("3-1", "a", "1-", "1-99999"):
        with pytest.raises(LibraryError):
            parse_range(bad)


async def test_rescan_writes_only_series_whose_files_changed(library: AnimeLibrary) -> None:
    store = library.db.store
    for name in ("Alpha", "Beta"):
        season = library.root / name / "Season 01"
        season.mkdir(parents=True)
        (library.root / name / "key").write_text(f"aniworld.to {name.lower()}\n")
        for n in (1, 2):
            (season / f"{name} - S01E0{n}.mp4").write_bytes(b"x" * n)
    await library.scan()
    assert {(e.code, e.size) for e in await library.db.episodes("alpha")} == {
        ("S01E01", 1),
        ("S01E02", 2),
    }
    writes = store.statistics().writes
    await library.scan()  # nothing changed: nothing written
    assert store.statistics().writes == writes
    # a file grows, another goes: only Alpha is written again, and exactly as on disk
    (library.root / "Alpha" / "Season 01" / "Alpha - S01E01.mp4").write_bytes(b"x" * 10)
    (library.root / "Alpha" / "Season 01" / "Alpha - S01E02.mp4").unlink()
    await library.scan()
    assert store.statistics().writes == writes + 1
    alpha = {e.code: (e.file_path, e.size) for e in await library.db.episodes("alpha")}
    assert alpha == {
        "S01E01": ("Alpha/Season 01/Alpha - S01E01.mp4", 10),
        "S01E02": (None, None),
    }
    assert {e.code for e in await library.db.episodes("beta") if e.present} == {
        "S01E01",
        "S01E02",
    }


async def test_a_download_makes_the_next_scan_record_its_series_again(
    library: AnimeLibrary,
) -> None:
    season = library.root / "Gamma" / "Season 01"
    season.mkdir(parents=True)
    (library.root / "Gamma" / "key").write_text("gamma\n")
    (season / "Gamma - S01E01.mp4").write_bytes(b"1")
    await library.scan()
    # an episode recorded by a download whose file is then removed by hand
    await library.landed("gamma", 1, 2, season / "Gamma - S01E02.mp4", 5)
    assert {e.code for e in await library.db.episodes("gamma") if e.present} == {
        "S01E01",
        "S01E02",
    }
    await library.scan()
    assert {e.code for e in await library.db.episodes("gamma") if e.present} == {"S01E01"}


async def test_two_folders_of_one_series_are_recorded_together(library: AnimeLibrary) -> None:
    for folder, n in (("Delta", 1), ("Delta (copy)", 2)):
        season = library.root / folder / "Season 01"
        season.mkdir(parents=True)
        (library.root / folder / "key").write_text("delta\n")
        (season / f"Delta - S01E0{n}.mp4").write_bytes(b"1")
    await library.scan()
    writes = library.db.store.statistics().writes
    await library.scan()  # the merged digest and the folder are stable: nothing written
    assert library.db.store.statistics().writes == writes
    delta = await library.db.series("delta")
    assert delta is not None
    assert delta.folder == "Delta"  # the first folder in name order
    assert {e.code for e in await library.db.episodes("delta") if e.present} == {
        "S01E01",
        "S01E02",
    }
