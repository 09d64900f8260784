"""The cache store: atomic import, the SQLite index, pruning, rescans (real files, real SQLite)."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

import pytest
import trio

from hathd.hath import pruning
from hathd.hath.cache import Cache
from hathd.hath.protocol import FileId
from hathd.store import Store, open_store

from .helpers import sha1

DAY = 86400


def _fid(data: bytes, prefix: str | None = None) -> FileId:
    h = sha1(data)
    return FileId.parse(f"{h}-{len(data)}-1-1-jpg")


async def _put(cache: Cache, tmp_path: Path, data: bytes, mtime: float | None = None) -> FileId:
    fid = _fid(data)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    assert await cache.import_file(src, fid)
    if mtime is not None:
        os.utime(cache.path_of(fid), (mtime, mtime))
        await cache.rescan(verify=False)
    return fid


async def test_import_rejects_mismatch_and_leaves_nothing(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db") as store:
        cache = await Cache.open(store, tmp_path / "cache")
        data = os.urandom(1000)
        fid = _fid(data)
        src = tmp_path / "src.bin"
        src.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        assert not await cache.import_file(src, fid)
        src.write_bytes(data + b"x")
        assert not await cache.import_file(src, fid)
        assert cache.count == 0
        assert not cache.path_of(fid).exists()
        assert list(cache.tmp.iterdir()) == []
        src.write_bytes(data)
        assert await cache.import_file(src, fid)
        assert cache.path_of(fid).read_bytes() == data
        assert cache.path_of(fid).parent == tmp_path / "cache" / fid.hash[:2] / fid.hash[2:4]
        assert src.exists()  # copied, not moved
        assert await cache.import_file(src, fid)  # again: still one file
        assert cache.count == 1


FAIL_INSERT = (
    "CREATE TRIGGER fail_insert BEFORE INSERT ON hath_files "
    "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
)
FAIL_DELETE = (
    "CREATE TRIGGER fail_delete BEFORE DELETE ON hath_files "
    "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
)


async def _rows(store: Store) -> list[str]:
    return [str(r[0]) for r in await store.query("SELECT fileid FROM hath_files")]


async def test_no_file_is_ever_in_the_cache_without_its_index_row(tmp_path: Path) -> None:
    # A hit looks only at the file, so a file without a row would be served but never counted
    # or pruned. The row is written before the rename and removed after the unlink; an index
    # write that fails (as a crash between the two steps would) leaves at most a row without
    # a file, never the reverse.
    async with open_store(tmp_path / "db") as store:
        cache = await Cache.open(store, tmp_path / "cache")
        data = os.urandom(1000)
        fid = _fid(data)
        src = tmp_path / "src.bin"
        src.write_bytes(data)

        await store.execute(FAIL_INSERT)
        with pytest.raises(sqlite3.DatabaseError, match="disk is full"):
            await cache.import_file(src, fid)
        assert not cache.path_of(fid).exists()
        assert cache.stat_hit(fid) is None
        assert list(cache.tmp.iterdir()) == []
        assert (cache.count, await _rows(store)) == (0, [])
        await store.execute("DROP TRIGGER fail_insert")

        # The rename fails (the range directory is blocked by a file): the row is taken back.
        blocker = tmp_path / "cache" / fid.hash[:2]
        blocker.write_bytes(b"in the way")
        with pytest.raises(OSError):
            await cache.import_file(src, fid)
        assert (cache.count, await _rows(store)) == (0, [])
        assert list(cache.tmp.iterdir()) == []
        blocker.unlink()

        assert await cache.import_file(src, fid)
        assert await _rows(store) == [str(fid)]

        await store.execute(FAIL_DELETE)
        with pytest.raises(sqlite3.DatabaseError, match="disk I/O error"):
            await cache.delete([str(fid)])
        assert cache.stat_hit(fid) is None  # gone from disk: never served again
        assert (cache.count, await _rows(store)) == (1, [str(fid)])  # a row without a file
        await store.execute("DROP TRIGGER fail_delete")
        # Repaired by a re-import (the row is kept, the counters stay right) or a delete.
        assert await cache.import_file(src, fid)
        assert (cache.count, cache.total_bytes) == (1, len(data))
        assert await cache.delete([str(fid)]) == 1
        assert (cache.count, await _rows(store)) == (0, [])


async def test_index_survives_reopen_and_tracks_ranges(tmp_path: Path) -> None:
    blobs = [os.urandom(100 + i) for i in range(20)]
    async with open_store(tmp_path / "db") as store:
        cache = await Cache.open(store, tmp_path / "cache")
        fids = [await _put(cache, tmp_path, b) for b in blobs]
        await cache.delete([str(fids[0]), "not-a-fileid"])
    async with open_store(tmp_path / "db") as store:
        cache = await Cache.open(store, tmp_path / "cache")
        assert cache.count == 19
        assert cache.total_bytes == sum(len(b) for b in blobs[1:])
        assert await cache.range_names() == {f.static_range for f in fids[1:]}
        assert cache.range_count == len({f.static_range for f in fids[1:]})
        rows = await store.query("SELECT count(*) FROM hath_files")
        assert rows[0][0] == 19


async def test_pruning_removes_oldest_range_first(tmp_path: Path) -> None:
    now = time.time()
    async with open_store(tmp_path / "db") as store:
        cache = await Cache.open(store, tmp_path / "cache")
        old = [os.urandom(50_000) for _ in range(3)]
        new = [os.urandom(50_000) for _ in range(3)]
        old_ids = []
        for b in old:
            fid = await _put(cache, tmp_path, b)
            os.utime(cache.path_of(fid), (now - 200 * DAY, now - 200 * DAY))
            old_ids.append(fid)
        new_ids = [await _put(cache, tmp_path, b) for b in new]
        await cache.rescan(verify=True)
        assert cache.count == 6
        used = cache.used_with_overhead()
        # limit slightly under usage: need = 100 MiB + overshoot, so everything prunable goes,
        # oldest range first
        first_range = await cache.oldest_range()
        assert first_range is not None
        assert first_range in {f.static_range for f in old_ids}
        files, freed = await cache.prune_once(int(now))
        assert files >= 1
        assert freed == 50_000 * files
        assert first_range not in await cache.range_names()
        assert not (tmp_path / "cache" / first_range[:2] / first_range[2:]).exists()
        files, freed = await cache.prune(used + pruning.WANT_FREE * 2)  # nothing to do
        assert (files, freed) == (0, 0)
        remaining = cache.count
        await cache.prune(used - 1)
        assert cache.count == 0 < remaining
        assert all(not cache.path_of(f).exists() for f in old_ids + new_ids)


async def test_rescan_verifies_moves_and_deletes(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db") as store:
        root = tmp_path / "cache"
        cache = await Cache.open(store, root)
        good = os.urandom(3000)
        fid = await _put(cache, tmp_path, good)
        corrupt = os.urandom(3000)
        cfid = await _put(cache, tmp_path, corrupt)
        cache.path_of(cfid).write_bytes(b"\1" * 3000)  # right size, wrong hash
        stray = os.urandom(10)
        sfid = _fid(stray)
        (root / sfid.hash[:2]).mkdir(exist_ok=True)
        (root / sfid.hash[:2] / str(sfid)).write_bytes(stray)  # level 1: moved into place
        (root / "aa").mkdir(exist_ok=True)
        (root / "aa" / "junk.txt").write_bytes(b"x")
        seen: list[tuple[int, int]] = []
        result = await cache.rescan(verify=True, progress=lambda d, t: seen.append((d, t)))
        assert result.kept == 2
        assert result.removed == 2
        assert result.moved == 1
        assert seen[-1] == (4, 4)
        assert cache.path_of(fid).read_bytes() == good
        assert cache.path_of(sfid).read_bytes() == stray
        assert not cache.path_of(cfid).exists()
        assert not (root / "aa").exists()
        assert cache.count == 2
        lazy = await cache.rescan(verify=False)
        assert lazy.kept == 2


async def test_lru_touch_is_weekly(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db") as store:
        cache = await Cache.open(store, tmp_path / "cache")
        fid = await _put(cache, tmp_path, os.urandom(500))
        path = cache.path_of(fid)
        old = time.time() - 8 * DAY
        os.utime(path, (old, old))
        st = os.stat(path)
        assert cache.mark_accessed(fid, time.time())[0] is False  # import marked it
        cache.lru = pruning.LruTable()  # a week later the sweep has cleared the bit
        newly, verify = cache.mark_accessed(fid, time.time())
        assert newly
        assert verify
        assert cache.mark_accessed(fid, time.time()) == (False, False)
        await cache.touch_if_old(fid, st.st_mtime)
        assert time.time() - os.stat(path).st_mtime < 60
        rows = await store.query("SELECT mtime FROM hath_files")
        assert time.time() - rows[0][0] < 60
        fresh = os.stat(path)
        await cache.touch_if_old(fid, fresh.st_mtime)
        assert os.stat(path).st_mtime == fresh.st_mtime


def test_pruning_rules() -> None:
    assert pruning.prune_cutoff(0, 181 * DAY) == 30 * DAY
    assert pruning.prune_cutoff(0, 91 * DAY) == 7 * DAY
    assert pruning.prune_cutoff(0, 31 * DAY) == 3 * DAY
    assert pruning.prune_cutoff(0, 30 * DAY) == DAY
    mib = pruning.MIB
    assert pruning.bytes_to_free(1000 * mib, 900 * mib) == 200 * mib
    assert pruning.bytes_to_free(850 * mib, 900 * mib) == 50 * mib
    assert pruning.bytes_to_free(100 * mib, 900 * mib) == 0
    assert pruning.size_with_overhead(1000, 10, 4096) == 1000 + 10 * 2048
    ranges = {
        "aaaa": pruning.RangeStats(1, 1, 50),
        "bbbb": pruning.RangeStats(1, 1, 10),
        "cccc": pruning.RangeStats(0, 0, 1),
    }
    assert pruning.oldest_range(ranges) == "bbbb"
    table = pruning.LruTable()
    assert table.mark(5, 3)
    assert not table.mark(5, 3)
    for _ in range(pruning.LRU_WORDS // pruning.LRU_CLEAR_PER_CYCLE + 1):
        table.cycle()
    assert table.mark(5, 3)


async def test_stale_temp_files_are_cleared_at_open(tmp_path: Path) -> None:
    (tmp_path / "cache" / ".tmp").mkdir(parents=True)
    stale = tmp_path / "cache" / ".tmp" / "proxyfile_123"
    stale.write_bytes(b"partial")
    async with open_store(tmp_path / "db") as store:
        await Cache.open(store, tmp_path / "cache")
    assert not stale.exists()
    await trio.lowlevel.checkpoint()


class _VmSteps:
    """Counts SQLite virtual-machine instructions run on the store's connections (the work a
    statement does: rows visited, index probes); the handler runs every :attr:`GRAIN` instructions
    of one statement, so 1 counts them all."""

    GRAIN = 1

    def __init__(self) -> None:
        self.ticks = 0

    def __call__(self) -> int:
        self.ticks += 1
        return 0  # 0: go on

    async def install(self, store: Store) -> None:
        await store.write(lambda conn: conn.set_progress_handler(self, self.GRAIN))
        for conn in store._all_readers:
            conn.set_progress_handler(self, self.GRAIN)

    @property
    def instructions(self) -> int:
        return self.ticks * self.GRAIN


class _PyLines:
    """Counts the Python lines run on this thread (the Trio thread: the cache's own code and
    the scheduler) while it is installed with ``sys.settrace``."""

    def __init__(self) -> None:
        self.lines = 0

    def __call__(self, frame: object, event: str, arg: object) -> _PyLines:
        if event == "line":
            self.lines += 1
        return self


async def _big_index(store: Store, files: int, now: int, rng_seed: int) -> list[str]:
    """``files`` rows over the 65,536 static ranges (mtimes within the last 20 days), plus three
    files 200 days old in range ``0000``: the first pruning step must take exactly those."""
    import random

    rng = random.Random(rng_seed)
    rows = []
    for _ in range(files):
        h = f"{rng.getrandbits(160):040x}"
        if h.startswith("0000"):
            h = "1" + h[1:]
        size = rng.randrange(50_000, 2_000_000)
        rows.append((f"{h}-{size}-1-1-jpg", h[:4], size, now - rng.randrange(20 * DAY)))
    old = [f"0000{i:036x}-1000-1-1-jpg" for i in range(3)]
    rows += [(name, "0000", 1000, now - 200 * DAY) for name in old]

    def fill(conn: sqlite3.Connection) -> None:
        conn.executemany("INSERT INTO hath_files VALUES (?,?,?,?)", rows)
        conn.execute(
            "INSERT INTO hath_ranges SELECT srange, count(*), sum(size), min(mtime) "
            "FROM hath_files GROUP BY srange"
        )

    await store.write(fill)
    return old


async def _one_step_work(tmp_path: Path, files: int) -> tuple[int, int, int]:
    """Open a cache on an index of ``files`` (+3 old) rows, run one pruning step and a scan of
    every range row; returns the SQLite instructions of each and the step's Python lines."""
    now = int(time.time())
    async with open_store(tmp_path / f"db{files}") as store:
        cache = await Cache.open(store, tmp_path / f"cache{files}")
        old = await _big_index(store, files, now, files)
        await cache.reload()
        assert cache.count == files + 3
        ranges = await store.query("SELECT srange, count, bytes, oldest FROM hath_ranges")
        reference = pruning.oldest_range(
            {str(r[0]): pruning.RangeStats(r[1], r[2], r[3]) for r in ranges}
        )
        assert reference == "0000" == await cache.oldest_range()
        steps = _VmSteps()
        await steps.install(store)
        lines = _PyLines()
        sys.settrace(lines)
        try:
            freed = await cache.prune_once(now)
        finally:
            sys.settrace(None)
        assert freed == (3, 3000)
        step = steps.instructions
        steps.ticks = 0
        await store.query("SELECT srange, count, bytes, oldest FROM hath_ranges")
        scan = steps.instructions
        assert cache.count == files
        left = await store.query(
            "SELECT count(*) FROM hath_files WHERE fileid IN (?,?,?)", tuple(old)
        )
        assert left[0][0] == 0
        assert await cache.range_stats("0000") == pruning.RangeStats()
        assert cache.total_bytes == (await store.query("SELECT sum(size) FROM hath_files"))[0][0]
        # the next step takes the range whose file is now the oldest, as the rule says
        ranges = await store.query("SELECT srange, count, bytes, oldest FROM hath_ranges")
        reference = pruning.oldest_range(
            {str(r[0]): pruning.RangeStats(r[1], r[2], r[3]) for r in ranges}
        )
        assert await cache.oldest_range() == reference
    return step, scan, lines.lines


async def test_a_pruning_step_costs_the_same_at_100_000_files(tmp_path: Path) -> None:
    small_step, _, small_lines = await _one_step_work(tmp_path, 1_000)
    big_step, big_scan, big_lines = await _one_step_work(tmp_path, 100_000)
    # one step (three files evicted) at 100,000 files over 65,536 ranges does the work it
    # does at 1,000 files, in SQLite and in Python, and far less than one pass over the range
    # rows (each step used to pass over all of them in Python)
    assert big_step < 2 * small_step, (small_step, big_step)
    assert big_step * 20 < big_scan, (big_step, big_scan)
    assert big_lines < 2 * small_lines, (small_lines, big_lines)
    assert big_lines < 20_000, big_lines
