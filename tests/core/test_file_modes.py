"""The state directory is 0700 and the SQLite files 0600, whatever mode they had before."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from hathd.config import Config
from hathd.runtime import open_runtime
from hathd.store import open_store


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_existing_state_dir_is_made_private(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="hathd.runtime"):
        async with open_runtime(Config(), state) as rt:
            assert _mode(state) == 0o700
            await rt.store.execute("CREATE TABLE t (n INTEGER)")
            await rt.store.execute("INSERT INTO t VALUES (1)")
            database = rt.paths.database
            for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
                assert path.exists(), path
                assert _mode(path) == 0o600, path
    assert any("had mode 0755; set to 0700" in r.getMessage() for r in caplog.records)


async def test_existing_database_files_are_made_private(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    async with open_store(db) as store:
        await store.execute("CREATE TABLE t (n INTEGER)")
    for suffix in ("", "-wal", "-shm"):
        path = f"{db}{suffix}"
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
        os.chmod(path, 0o644)
    async with open_store(db) as store:
        await store.execute("INSERT INTO t VALUES (1)")
        for suffix in ("", "-wal", "-shm"):
            assert _mode(Path(f"{db}{suffix}")) == 0o600, suffix
