"""The SQLite store: group commit, per-closure rollback, durability, migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from hathd.errors import StoreError
from hathd.store import open_store


async def test_concurrent_writes_share_transactions(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db.sqlite3") as store:
        await store.execute("CREATE TABLE t (n INTEGER)")

        async def insert(n: int) -> None:
            await store.execute("INSERT INTO t VALUES (?)", (n,))

        async with trio.open_nursery() as nursery:
            for n in range(500):
                nursery.start_soon(insert, n)
        rows = await store.query("SELECT count(*), sum(n) FROM t")
        assert tuple(rows[0]) == (500, sum(range(500)))
        stats = store.statistics()
        assert stats.writes == 501
        assert stats.batches < stats.writes  # some writes were grouped into one COMMIT
        assert stats.max_batch > 1


async def test_failing_closure_rolls_back_alone(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db.sqlite3") as store:
        await store.execute("CREATE TABLE t (n INTEGER UNIQUE)")
        await store.execute("INSERT INTO t VALUES (1)")

        def bad(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t VALUES (2)")
            conn.execute("INSERT INTO t VALUES (1)")  # violates UNIQUE

        results: list[object] = []

        async def good(n: int) -> None:
            results.append(await store.execute("INSERT INTO t VALUES (?)", (n,)))

        async def failing() -> None:
            with pytest.raises(sqlite3.IntegrityError):
                await store.write(bad)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(good, 10)
            nursery.start_soon(failing)
            nursery.start_soon(good, 11)
        rows = await store.query("SELECT n FROM t ORDER BY n")
        assert [r[0] for r in rows] == [1, 10, 11]  # 2 was rolled back with its closure
        assert results == [1, 1]


async def test_write_is_durable_when_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with open_store(path) as store:
        await store.execute("CREATE TABLE t (n INTEGER)")
        await store.execute("INSERT INTO t VALUES (42)")
        # Another connection (another process would be the same) sees the committed row now.
        other = sqlite3.connect(path)
        try:
            assert other.execute("SELECT n FROM t").fetchall() == [(42,)]
        finally:
            other.close()


async def test_cancelled_caller_still_gets_its_write_done(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db.sqlite3") as store:
        await store.execute("CREATE TABLE t (n INTEGER)")
        with trio.CancelScope() as scope:
            scope.cancel()
            await store.execute("INSERT INTO t VALUES (7)")  # shielded: completes anyway
        rows = await store.query("SELECT n FROM t")
        assert [r[0] for r in rows] == [7]


async def test_migrations_are_versioned_per_component(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    steps = ["CREATE TABLE a (x INTEGER);\nCREATE INDEX a_x ON a(x);"]
    async with open_store(path) as store:
        assert await store.migrate("alpha", steps) == 1
        assert await store.migrate("alpha", steps) == 1  # idempotent
        calls: list[int] = []

        def add_column(conn: sqlite3.Connection) -> None:
            calls.append(1)
            conn.execute("ALTER TABLE a ADD COLUMN y TEXT")

        assert await store.migrate("alpha", [*steps, add_column]) == 2
        assert await store.migrate("beta", ["CREATE TABLE b (x)"]) == 1
    async with open_store(path) as store:
        assert await store.migrate("alpha", [*steps, add_column]) == 2
        assert calls == [1]
        cols = [r[1] for r in await store.query("PRAGMA table_info(a)")]
        assert cols == ["x", "y"]


async def test_a_failed_migration_leaves_the_version(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db.sqlite3") as store:
        with pytest.raises(sqlite3.OperationalError):
            await store.migrate("gamma", ["CREATE TABLE g (x)", "CREATE TABLE g (x)"])
        rows = await store.query("SELECT version FROM schema_versions WHERE component='gamma'")
        assert rows == []
        tables = await store.query("SELECT name FROM sqlite_master WHERE name = 'g'")
        assert tables == []  # step 1 rolled back with step 2


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db.sqlite3") as store:
        pass
    with pytest.raises(StoreError):
        await store.execute("SELECT 1")


async def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        async with open_store(path):
            pass
