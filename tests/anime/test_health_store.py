"""Hoster health survives a restart: written to the real store as it changes, read back by
the next process's keeper."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from hathd.anime.health import HosterHealth
from hathd.anime.healthstore import HealthKeeper
from hathd.anime.store import AnimeStore
from hathd.store import open_store


async def test_health_is_written_as_it_changes_and_restored_after_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite3"
    async with open_store(path) as store:
        db = AnimeStore(store)
        await db.migrate()
        health = HosterHealth(cooldown=600.0, failure_threshold=2)
        keeper = HealthKeeper(health, db)
        assert await keeper.load() == 0
        async with trio.open_nursery() as nursery:
            await nursery.start(keeper.run)
            health.record_success("vidoza", 1.5)
            health.record_failure("voe", "HTTP 500")
            assert health.record_failure("voe", "HTTP 502")
            with trio.fail_after(10):
                while keeper.statistics()["pending"] or not keeper.writes:
                    await trio.sleep(0.01)
            # written while running (not only at shutdown): a reader sees it now
            rows = await store.query("SELECT hoster FROM anime_hoster_health ORDER BY hoster")
            assert [r[0] for r in rows] == ["vidoza", "voe"]
            nursery.cancel_scope.cancel()
    # the next start
    async with open_store(path) as store:
        db = AnimeStore(store)
        await db.migrate()
        health = HosterHealth(cooldown=600.0, failure_threshold=2)
        assert await HealthKeeper(health, db).load() == 2
        assert not health.available("voe")
        assert health.cooldown_left("voe") == pytest.approx(600.0, abs=30.0)
        assert health.status("voe").last_error == "HTTP 502"
        assert health.status("vidoza").latency == pytest.approx(1.5)
        assert health.available("vidoza")


async def test_a_damaged_row_is_skipped_and_the_others_load(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db.sqlite3") as store:
        db = AnimeStore(store)
        await db.migrate()
        await db.save_hoster_health({"voe": HosterHealth().export("voe")})
        await store.execute(
            "INSERT INTO anime_hoster_health (hoster, state, updated_at) VALUES (?, ?, 0)",
            ("filemoon", '{"outcomes": 5}'),
        )
        await store.execute(
            "INSERT INTO anime_hoster_health (hoster, state, updated_at) VALUES (?, ?, 0)",
            ("dood", "not json"),
        )
        health = HosterHealth()
        assert await HealthKeeper(health, db).load() == 1
        assert health.hosters() == ["voe"]
