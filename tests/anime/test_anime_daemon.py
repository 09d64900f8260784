"""End to end: ``hathd run`` with ``[anime]`` against fake aniworld.to and s.to sites, driven
by the ``hathd anime …`` CLI (through the admin API): search, add, a filled season on disk,
missing episodes, scan, follow, changed markup, hostile titles."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from conftest import DaemonHandle, StartDaemon, run_cli
from fakes.anime_site import (
    FakeEpisode,
    FakeProviderSite,
    catalogue,
    media_bytes,
    open_fake_provider,
)
from hathd.client import AdminError


@asynccontextmanager
async def _sites() -> AsyncIterator[tuple[FakeProviderSite, FakeProviderSite]]:
    async with (
        open_fake_provider(FakeProviderSite(series=catalogue())) as aw,
        open_fake_provider(
            FakeProviderSite(prefix="/serie/stream", series={"frieren": catalogue()["frieren"]})
        ) as st,
    ):
        yield aw, st


def _config(library: Path, aw: FakeProviderSite, st: FakeProviderSite) -> str:
    return (
        "[anime]\nenabled = true\n"
        f'library = "{library}"\naniworld_url = "{aw.base_url}"\nsto_url = "{st.base_url}"\n'
        'hosters = ["vidoza", "voe"]\nrescan_interval = 0\n'
    )


async def _cli(h: DaemonHandle, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await run_cli("--state-dir", str(h.state_dir), "anime", *args)


async def _json(h: DaemonHandle, *args: str) -> Any:
    done = await _cli(h, *args, "--json")
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


async def _wait_present(h: DaemonHandle, key: str, count: int) -> dict[str, Any]:
    with trio.fail_after(90):
        while True:
            shown = await _json(h, "show", key)
            if sum(1 for e in shown["episodes"] if e["file_path"]) >= count:
                return shown
            await trio.sleep(0.3)


async def test_search_to_a_filled_season(start_daemon: StartDaemon, tmp_path: Path) -> None:
    library = tmp_path / "anime"
    async with _sites() as (aw, st):
        h = await start_daemon(_config(library, aw, st))

        found = await _cli(h, "search", "Frie")
        assert found.returncode == 0, found.stderr.decode()
        lines = found.stdout.decode().splitlines()
        assert any(line.split()[:2] == ["frieren", "aniworld.to"] for line in lines)
        assert any(line.split()[:2] == ["frieren", "s.to"] for line in lines)
        assert ("POST", "/ajax/search") in aw.requests

        added = await _json(
            h, "add", f"{aw.base_url}/anime/stream/frieren", "--season", "1", "--episodes", "1-3"
        )
        assert added["series"]["name"] == "Frieren"
        assert [j["episode"] for j in added["jobs"] if "job" in j] == [1, 2, 3]

        shown = await _wait_present(h, "frieren", 3)
        folder = library / "Frieren (2023)" / "Season 01"
        for n in (1, 2, 3):
            path = folder / f"Frieren - S01E{n:02d} - Episode {n}.mp4"
            body = path.read_bytes()
            assert body[4:8] == b"ftyp"
            assert body in {media_bytes(lid) for lid in aw.links}
        assert sorted(p.name for p in folder.iterdir()) == [
            f"Frieren - S01E{n:02d} - Episode {n}.mp4" for n in (1, 2, 3)
        ]  # no part file left
        by_code = {e["code"]: e for e in shown["episodes"]}
        assert by_code["S01E01"]["job"] is not None
        assert by_code["S01E01"]["size"] == 4096

        missing = await _json(h, "missing", "frieren")
        assert [e["code"] for e in missing["missing"]] == ["S01E04"]

        # the rest of the series (films, season 2) is read with a second add without filters
        more = await _json(h, "add", "frieren", "--no-queue", "--follow")
        assert more["series"]["followed"] is True
        missing = await _json(h, "missing", "frieren")
        assert [e["code"] for e in missing["missing"]] == ["S00E01", "S01E04", "S02E01", "S02E02"]

        # a file copied in by hand is found by the scan (folder matched by name)
        (library / "Frieren (2023)" / "Season 02").mkdir()
        (library / "Frieren (2023)" / "Season 02" / "frieren.s02e01.mkv").write_bytes(b"x")
        (library / "Unknown Show").mkdir()
        scanned = await _json(h, "scan")
        assert scanned["matched"] == 1
        assert scanned["unmatched"] == ["Unknown Show"]
        listing = await _json(h, "ls")
        row = next(s for s in listing["series"] if s["key"] == "frieren")
        assert (row["present"], row["missing"]) == (4, 3)

        # a new episode appears; the watchlist check (by hand here) queues it and the rest
        aw.series["frieren"].seasons[1].append(FakeEpisode(5, "Neu", "New"))
        started = await _cli(h, "check")
        assert started.returncode == 0, started.stderr.decode()
        shown = await _wait_present(h, "frieren", 8)
        assert (library / "Frieren (2023)" / "Season 01" / "Frieren - S01E05 - New.mp4").is_file()
        assert (
            library / "Frieren (2023)" / "Season 00" / "Frieren - S00E01 - The Movie.mp4"
        ).is_file()
        assert (await _json(h, "missing"))["missing"] == []

        await h.stop()


async def test_changed_markup_and_hostile_titles(start_daemon: StartDaemon, tmp_path: Path) -> None:
    library = tmp_path / "anime"
    async with _sites() as (aw, st):
        h = await start_daemon(_config(library, aw, st))

        aw.changed.add("series")
        refused = await _cli(h, "add", "frieren")
        assert refused.returncode != 0
        assert "series page markup changed: title" in refused.stderr.decode()
        aw.changed.clear()
        aw.changed.add("season")
        refused = await _cli(h, "add", "frieren")
        assert "season page markup changed: episode number" in refused.stderr.decode()
        aw.changed.clear()
        listing = await _json(h, "ls")
        assert listing["series"] == []  # nothing half-stored

        added = await _json(h, "add", f"{aw.base_url}/anime/stream/acdc-live")
        assert added["series"]["status"] == "completed"
        assert [j["episode"] for j in added["jobs"] if "job" in j] == [1]
        await _wait_present(h, "acdc-live", 1)
        files = [p.relative_to(library) for p in library.rglob("*") if p.is_file()]
        assert [str(f) for f in files] == [
            "AC DC .. Live \U0001f3b8 (2001)/Season 01/"
            "AC DC .. Live \U0001f3b8 - S01E01 - End .. Start [31m.mp4"
        ]

        # German only: the English-sub series has nothing to queue
        only_de = await _json(h, "add", "acdc-live", "--lang", "de-dub")
        assert only_de["jobs"] == []

        async with h.admin() as admin:
            for method, path, body, status in [
                ("POST", "/api/v1/anime/search", {"text": 5}, 400),
                ("POST", "/api/v1/anime", {"ref": "frieren", "episodes": "9-1"}, 400),
                ("POST", "/api/v1/anime", {"ref": "frieren", "languages": ["fr"]}, 400),
                ("POST", "/api/v1/anime/nope/queue", {}, 404),
                ("POST", "/api/v1/anime/nope/follow", {"follow": True}, 404),
                ("GET", "/api/v1/anime/nope", None, 404),
                ("PUT", "/api/v1/anime/scheduler", {"at": "25:00"}, 400),
                ("POST", "/api/v1/anime", {"ref": "no-such-show"}, 502),
            ]:
                with pytest.raises(AdminError) as info:
                    await admin.request(method, path, json=body)
                assert info.value.status == status, (path, info.value.body)
            sched = await admin.request(
                "PUT", "/api/v1/anime/scheduler", json={"interval": 0, "at": "04:30"}
            )
            assert sched["at"] == "04:30"
            assert sched["next_run"] is not None
            assert (await admin.get("/api/v1/anime/scheduler"))["at"] == "04:30"

        bad = await _cli(h, "add", "../../etc/passwd")
        assert bad.returncode != 0
        assert "nor a key" in bad.stderr.decode()
        await h.stop()
