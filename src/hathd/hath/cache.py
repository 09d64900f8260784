"""The H@H file cache: files at ``cache/<hash[0:2]>/<hash[2:4]>/<fileid>`` plus an SQLite index.

Layout (docs/hath-protocol.md §4.1): one second-level directory per static range. The index lives in
the daemon's store (component ``hath``):

* ``hath_files(fileid, srange, size, mtime)`` — one row per cached file;
* ``hath_ranges(srange, count, bytes, oldest)`` — per static range, maintained in the same
  transaction as every file change, so start-up sums at most 65 536 rows and walks no directory,
  and a crash forces no rescan (§4.2; the official client loses its state on a crash).

Only the totals (files, bytes, ranges) live in memory, updated by every change. The per-range
rows stay in SQLite: an index on ``hath_ranges(oldest, srange)`` gives the range with the oldest
file, and ``hath_files(srange, mtime)`` its files below the cutoff, so one pruning step costs
O(log n + files evicted), whatever the number of ranges or files (§4.4).

Files enter the cache only through :meth:`Cache.import_file` / :meth:`Cache.import_verified`,
which rename a temporary file (under ``cache/.tmp/``, the same filesystem) into place after its
size and SHA-1 match the fileid. The mtime is the LRU clock (touched at most weekly, §4.3) and
pruning follows the official rule (:mod:`hathd.hath.pruning`, §4.4). ``hathd hath verify``
runs :meth:`Cache.rescan`.

Crash safety. A cache hit looks only at the file (:meth:`Cache.stat_hit`: it exists and has
the fileid's size); the index feeds the counters, the pruner, the static-range clean-up and
start-up, which reads ``hath_ranges`` and walks no directory. So a *file without a row* would
be served but never counted, pruned or dropped with its range, until a rescan; a *row without
a file* is only a miss (proxied and re-imported, which keeps the row) and overstates the
counters by that file until it is re-imported, pruned, blacklisted or rescanned. The cache
keeps the invariant "file on disk ⇒ row in the index": an import commits the row *before* the
rename (and takes it back if the rename fails), a delete unlinks *before* it removes the row,
and both hold one lock so a prune cannot slip between the two steps of an import. A crash (or
a failed store write) can therefore leave at most a row without a file for the few files being
imported or deleted at that moment, never an untracked file.

Errors: filesystem failures raise ``OSError`` from the worker thread; store failures raise
:class:`~hathd.errors.StoreError`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import attrs
import trio

from hathd.hath.protocol import FileId
from hathd.hath.pruning import (
    LruTable,
    RangeStats,
    bytes_to_free,
    needs_touch,
    prune_cutoff,
    size_with_overhead,
)
from hathd.store import Migration, Store

log = logging.getLogger(__name__)

MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE hath_files (
        fileid TEXT PRIMARY KEY,
        srange TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX hath_files_range_mtime ON hath_files(srange, mtime);
    CREATE TABLE hath_ranges (
        srange TEXT PRIMARY KEY,
        count INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        oldest INTEGER
    );
    """,
    "CREATE INDEX hath_ranges_oldest ON hath_ranges(oldest, srange);",
]
"""Schema steps of component ``hath`` (applied through ``store.migrate``)."""

TMP_DIR = ".tmp"
HASH_CHUNK = 1024 * 1024


@attrs.frozen
class CacheStatistics:
    """Counters of the cache: files, bytes (fileid sizes), ranges, prunes and deletions."""

    count: int
    bytes: int
    ranges: int
    pruned_files: int
    pruned_bytes: int
    blacklisted: int
    corrupt_deleted: int


@attrs.frozen
class RescanResult:
    """Outcome of a full rescan: files kept, removed (bad name/size/hash) and moved."""

    kept: int
    removed: int
    moved: int
    bytes: int


def sha1_file(path: Path) -> str:
    """Hex SHA-1 of a file (blocking; call through ``trio.to_thread.run_sync``)."""
    h = hashlib.sha1()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- SQL helpers


@attrs.frozen
class Totals:
    """Change of the cache totals made by one index write: files, bytes, ranges (signed)."""

    count: int = 0
    bytes: int = 0
    ranges: int = 0


def _add_row(conn: sqlite3.Connection, fid: FileId, mtime: int) -> Totals:
    """Insert ``fid``'s row (or set its mtime if it exists) and keep its range row in step.
    O(log n): the range's new oldest comes from the ``(srange, mtime)`` index."""
    name = str(fid)
    srange = fid.static_range
    cur = conn.execute(
        "INSERT OR IGNORE INTO hath_files(fileid, srange, size, mtime) VALUES (?, ?, ?, ?)",
        (name, srange, fid.size, mtime),
    )
    if cur.rowcount == 1:
        new_range = (
            conn.execute("SELECT 1 FROM hath_ranges WHERE srange = ?", (srange,)).fetchone() is None
        )
        conn.execute(
            "INSERT INTO hath_ranges(srange, count, bytes, oldest) VALUES (?, 1, ?, ?) "
            "ON CONFLICT(srange) DO UPDATE SET count = count + 1, bytes = bytes + excluded.bytes, "
            "oldest = min(coalesce(oldest, excluded.oldest), excluded.oldest)",
            (srange, fid.size, mtime),
        )
        return Totals(1, fid.size, int(new_range))
    conn.execute("UPDATE hath_files SET mtime = ? WHERE fileid = ?", (mtime, name))
    _recompute_oldest(conn, srange)
    return Totals()


def _recompute_oldest(conn: sqlite3.Connection, srange: str) -> None:
    conn.execute(
        "UPDATE hath_ranges SET oldest = (SELECT min(mtime) FROM hath_files WHERE srange = ?) "
        "WHERE srange = ?",
        (srange, srange),
    )


def _range_row(conn: sqlite3.Connection, srange: str) -> RangeStats:
    row = conn.execute(
        "SELECT count, bytes, oldest FROM hath_ranges WHERE srange = ?", (srange,)
    ).fetchone()
    if row is None:
        return RangeStats()
    return RangeStats(int(row[0]), int(row[1]), None if row[2] is None else int(row[2]))


def _remove_rows(conn: sqlite3.Connection, names: Iterable[str]) -> Totals:
    """Delete these rows (unknown names skipped) and keep their range rows in step.
    O(k log n) for k names."""
    touched: set[str] = set()
    count = size_sum = 0
    for name in names:
        row = conn.execute(
            "DELETE FROM hath_files WHERE fileid = ? RETURNING srange, size", (name,)
        ).fetchone()
        if row is None:
            continue
        srange, size = str(row[0]), int(row[1])
        conn.execute(
            "UPDATE hath_ranges SET count = count - 1, bytes = bytes - ? WHERE srange = ?",
            (size, srange),
        )
        touched.add(srange)
        count += 1
        size_sum += size
    gone = 0
    for srange in touched:
        gone += conn.execute(
            "DELETE FROM hath_ranges WHERE srange = ? AND count <= 0", (srange,)
        ).rowcount
        _recompute_oldest(conn, srange)
    return Totals(-count, -size_sum, -gone)


def _load_totals(conn: sqlite3.Connection) -> Totals:
    row = conn.execute(
        "SELECT coalesce(sum(count), 0), coalesce(sum(bytes), 0), count(*) FROM hath_ranges"
    ).fetchone()
    return Totals(int(row[0]), int(row[1]), int(row[2]))


def _oldest_range(conn: sqlite3.Connection) -> tuple[str, int] | None:
    """The range holding the oldest file (ties: the smaller name), through the
    ``hath_ranges_oldest`` index: O(log n)."""
    row = conn.execute(
        "SELECT srange, oldest FROM hath_ranges WHERE oldest IS NOT NULL "
        "ORDER BY oldest, srange LIMIT 1"
    ).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


def _prune_candidates(conn: sqlite3.Connection, now: int) -> tuple[str, list[tuple[str, int]]]:
    """The oldest range and its files with mtime below the cutoff (§4.4), oldest first; if the
    cutoff finds none, the range's single oldest file. ``("", [])`` for an empty index."""
    found = _oldest_range(conn)
    if found is None:
        return "", []
    srange, oldest = found
    cutoff = prune_cutoff(oldest, now)
    rows = conn.execute(
        "SELECT fileid, size FROM hath_files WHERE srange = ? AND mtime < ? ORDER BY mtime",
        (srange, cutoff),
    ).fetchall()
    if not rows:  # the range row says older than the cutoff but the rows moved
        rows = conn.execute(
            "SELECT fileid, size FROM hath_files WHERE srange = ? ORDER BY mtime LIMIT 1",
            (srange,),
        ).fetchall()
    return srange, [(str(r[0]), int(r[1])) for r in rows]


# ------------------------------------------------------------------------------- the cache


class Cache:
    """The cache directory and its index; see the module docstring.

    Create with :meth:`open` (runs the migrations and loads the totals).
    """

    def __init__(self, store: Store, root: Path, *, blocksize: int = 4096) -> None:
        self.store = store
        self.root = root
        self._root_text = os.fspath(root)
        self.tmp = root / TMP_DIR
        self.blocksize = blocksize
        self._totals = Totals()
        self.lru = LruTable()
        self._verify_cooldown_until = 0.0
        self._pruned_files = 0
        self._pruned_bytes = 0
        self._blacklisted = 0
        self._corrupt = 0
        self._change_lock = trio.Lock()
        """Held across the two steps (row, file) of an import and of a delete."""

    @classmethod
    async def open(cls, store: Store, root: Path) -> Cache:
        """Migrate the index, create the directories, clear stale temporary files, load the
        per-range counters (no directory walk)."""
        await store.migrate("hath", MIGRATIONS)
        cache = cls(store, root)
        await trio.to_thread.run_sync(cache._prepare_dirs)
        await cache.reload()
        return cache

    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(exist_ok=True)
        for stale in self.tmp.iterdir():  # only our own temp dir, never the cache itself
            if stale.name.startswith("proxyfile_") or stale.name.startswith("import_"):
                stale.unlink(missing_ok=True)

    async def reload(self) -> None:
        """Re-read the totals from the index (one pass over at most 65 536 range rows, in
        SQLite)."""
        self._totals = await self.store.read(_load_totals)

    def _apply(self, delta: Totals) -> None:
        t = self._totals
        self._totals = Totals(t.count + delta.count, t.bytes + delta.bytes, t.ranges + delta.ranges)

    # -- accounting ------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Files in the index."""
        return self._totals.count

    @property
    def total_bytes(self) -> int:
        """Sum of the fileid sizes in the index (bytes)."""
        return self._totals.bytes

    @property
    def range_count(self) -> int:
        """Static ranges holding at least one indexed file."""
        return self._totals.ranges

    async def range_names(self) -> set[str]:
        """The static ranges holding at least one indexed file (reads the index)."""
        rows = await self.store.query("SELECT srange FROM hath_ranges")
        return {str(r[0]) for r in rows}

    async def range_stats(self, srange: str) -> RangeStats:
        """One range's row: file count, bytes and oldest mtime (zeros if it holds no file)."""
        return await self.store.read(lambda conn: _range_row(conn, srange))

    async def oldest_range(self) -> str | None:
        """The static range holding the oldest file (the next to prune), or ``None``."""
        found = await self.store.read(_oldest_range)
        return None if found is None else found[0]

    def used_with_overhead(self) -> int:
        """Bytes used, counting half a block per file (§4.2)."""
        return size_with_overhead(self.total_bytes, self.count, self.blocksize)

    def statistics(self) -> CacheStatistics:
        """Current counters."""
        return CacheStatistics(
            count=self.count,
            bytes=self.total_bytes,
            ranges=self._totals.ranges,
            pruned_files=self._pruned_files,
            pruned_bytes=self._pruned_bytes,
            blacklisted=self._blacklisted,
            corrupt_deleted=self._corrupt,
        )

    # -- lookups ---------------------------------------------------------------------------

    def path_of(self, fid: FileId) -> Path:
        """Where ``fid`` lives: ``<root>/<hash[0:2]>/<hash[2:4]>/<fileid>``."""
        return self.root / fid.relpath

    def hit_path(self, fid: FileId) -> str:
        """:meth:`path_of` as a string, built without ``pathlib`` (the hit path opens it for
        every request; docs/perf-hath.md, "Third pass")."""
        return f"{self._root_text}/{fid.relpath}"

    def stat_hit(self, fid: FileId) -> os.stat_result | None:
        """The file's stat if it is a cache hit: it exists and its size equals the fileid's
        (1.6.4+ rule, §3.3); else ``None``. Blocking (one ``stat``)."""
        try:
            st = os.stat(self.path_of(fid))
        except OSError:
            return None
        return st if st.st_size == fid.size else None

    def mark_accessed(self, fid: FileId, now: float) -> tuple[bool, bool]:
        """Official ``markRecentlyAccessed`` (§4.3): returns ``(newly_marked, verify)``.

        ``verify`` is true when the file is newly marked and verification is not on its 2 s
        cooldown (J165f ``isFileVerificationOnCooldown``). Touching the mtime happens in
        :meth:`touch_if_old`, called by the server when ``needs_touch`` holds.
        """
        index, bit = fid.lru_slot
        newly = self.lru.mark(index, bit)
        verify = False
        if newly and now >= self._verify_cooldown_until:
            self._verify_cooldown_until = now + 2.0
            verify = True
        return newly, verify

    async def touch_if_old(self, fid: FileId, mtime: float) -> None:
        """Set the file's mtime (and its index row) to now if ``mtime`` is older than 7 days
        (the official LRU clock, §4.3)."""
        now = time.time()
        if not needs_touch(mtime, now):
            return
        path = self.path_of(fid)
        try:
            await trio.to_thread.run_sync(os.utime, path)
        except OSError:
            return
        self._apply(await self.store.write(lambda conn: _add_row(conn, fid, int(now))))

    # -- changes ---------------------------------------------------------------------------

    def new_temp_path(self, prefix: str = "proxyfile_") -> Path:
        """A fresh temporary path under ``cache/.tmp`` (same filesystem as the cache)."""
        return self.tmp / f"{prefix}{os.getpid()}_{time.monotonic_ns()}_{id(object())}"

    async def import_verified(self, tmp_path: Path, fid: FileId) -> None:
        """Index ``tmp_path`` (whose size and SHA-1 the caller has checked against ``fid``) and
        then move it into the cache with one ``rename`` (row first: see "Crash safety" in the
        module docstring). The temp file is gone afterwards, whatever happens.

        :raises OSError: the temp file is unreadable or the rename failed (the row is taken
            back unless a good copy of the file is in place).
        :raises sqlite3.Error: the index write failed (nothing enters the cache).
        :raises StoreError: the store is closed.
        """
        final = self.path_of(fid)

        def mtime_of_tmp() -> int:
            try:
                return int(os.stat(tmp_path).st_mtime)  # a rename keeps the mtime
            except OSError:
                tmp_path.unlink(missing_ok=True)
                raise

        def move() -> None:
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_path, final)
            except OSError:
                tmp_path.unlink(missing_ok=True)
                raise

        mtime = await trio.to_thread.run_sync(mtime_of_tmp)
        async with self._change_lock:
            try:
                delta = await self.store.write(lambda conn: _add_row(conn, fid, mtime))
            except BaseException:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(partial(tmp_path.unlink, missing_ok=True))
                raise
            self._apply(delta)
            try:
                await trio.to_thread.run_sync(move)
            except OSError:
                with trio.CancelScope(shield=True):
                    if await trio.to_thread.run_sync(self.stat_hit, fid) is None:
                        name = str(fid)
                        changed = await self.store.write(lambda conn: _remove_rows(conn, [name]))
                        self._apply(changed)
                raise
        index, bit = fid.lru_slot
        self.lru.mark(index, bit)

    async def import_file(self, src: Path, fid: FileId, *, move: bool = False) -> bool:
        """Copy (or move) ``src`` into the cache if its size and SHA-1 match ``fid``.

        Returns ``False`` (and changes nothing) on a mismatch. The file is first copied to a
        temp name in ``cache/.tmp`` and then renamed, so a partial file never appears.
        """

        def stage() -> Path | None:
            if src.stat().st_size != fid.size or sha1_file(src) != fid.hash:
                return None
            tmp = self.new_temp_path("import_")
            if move:
                try:
                    os.replace(src, tmp)
                    return tmp
                except OSError:
                    pass
            shutil.copyfile(src, tmp)
            return tmp

        tmp = await trio.to_thread.run_sync(stage)
        if tmp is None:
            return False
        await self.import_verified(tmp, fid)
        return True

    async def delete(self, fileids: Iterable[str], *, reason: str = "delete") -> int:
        """Delete these files from disk, then from the index (file first: see "Crash safety" in
        the module docstring); unknown or malformed fileids are skipped. Returns how many files
        were on disk or in the index.

        :raises OSError: a file could not be unlinked (its row stays).
        :raises sqlite3.Error: the index write failed (the files are gone; their rows stay and
            overstate the counters until a re-import, prune or rescan).
        """
        fids = [f for f in (FileId.try_parse(s.strip()) for s in fileids) if f is not None]
        if not fids:
            return 0

        def unlink() -> int:
            gone = 0
            for fid in fids:
                try:
                    self.path_of(fid).unlink()
                    gone += 1
                except FileNotFoundError:
                    pass
            return gone

        names = [str(f) for f in fids]
        async with self._change_lock:
            on_disk = await trio.to_thread.run_sync(unlink)
            before = self.count
            changed = await self.store.write(lambda conn: _remove_rows(conn, names))
            self._apply(changed)
        removed = max(on_disk, before - self.count)
        if reason == "blacklist":
            self._blacklisted += removed
        elif reason == "corrupt":
            self._corrupt += removed
        return removed

    async def drop_outside_ranges(self, allowed: set[str]) -> int:
        """Delete indexed files whose static range is not in ``allowed`` (start-up cleanup,
        §4.2). Does nothing when ``allowed`` is empty."""
        if not allowed:
            return 0
        doomed = [r for r in await self.range_names() if r not in allowed]
        removed = 0
        for srange in doomed:
            rows = await self.store.query(
                "SELECT fileid FROM hath_files WHERE srange = ?", (srange,)
            )
            removed += await self.delete([str(r[0]) for r in rows])
        return removed

    # -- pruning ---------------------------------------------------------------------------

    def bytes_over(self, limit: int, free_disk: int | None = None, min_free: int = 0) -> int:
        """Bytes to prune for ``limit`` (and for keeping ``min_free`` bytes free on a disk that
        has ``free_disk`` free), per §4.4."""
        need = bytes_to_free(self.used_with_overhead(), limit)
        if free_disk is not None and free_disk < min_free:
            need = max(need, min_free - free_disk)
        return need

    async def prune_once(self, now: int | None = None) -> tuple[int, int]:
        """One official pruning step: take the range with the oldest file, delete every file in
        it with mtime below the age-scaled cutoff (§4.4). Returns ``(files, bytes)`` freed.

        Cost: one indexed lookup of the oldest range and one index range scan of its files
        below the cutoff, then one indexed delete per evicted file, O(log n + files evicted);
        no pass over the ranges or the files.
        """
        at = int(time.time()) if now is None else now
        srange, rows = await self.store.read(lambda conn: _prune_candidates(conn, at))
        if not rows:
            return 0, 0
        names = [r[0] for r in rows]
        freed = sum(r[1] for r in rows)
        await self.delete(names, reason="prune")
        await trio.to_thread.run_sync(self._remove_empty_range_dir, srange)
        self._pruned_files += len(names)
        self._pruned_bytes += freed
        return len(names), freed

    async def prune(
        self, limit: int, *, free_disk: int | None = None, min_free: int = 0
    ) -> tuple[int, int]:
        """Prune until :meth:`bytes_over` is satisfied or the cache is empty.
        Returns ``(files, bytes)`` freed in total."""
        need = self.bytes_over(limit, free_disk, min_free)
        files = freed = 0
        while need > 0 and self.count > 0:
            f, b = await self.prune_once()
            if f == 0:
                break
            files += f
            freed += b
            need -= b
        return files, freed

    def _remove_empty_range_dir(self, srange: str) -> None:
        d = self.root / srange[:2] / srange[2:4]
        for folder in (d, d.parent):
            try:
                folder.rmdir()
            except OSError:
                return

    # -- full rescan -----------------------------------------------------------------------

    async def rescan(
        self, *, verify: bool, progress: Callable[[int, int], None] | None = None
    ) -> RescanResult:
        """Walk the whole cache directory and rebuild the index (``hathd hath verify``).

        Every file must be named by a fileid and have its size (and, with ``verify``, its
        SHA-1); others are deleted. Files found at the wrong level are moved into place. Empty
        directories are removed. ``progress(done, total)`` is called from a worker thread.
        """
        result = await trio.to_thread.run_sync(self._scan_blocking, verify, progress)
        kept, summary = result
        rows = [(str(f), f.static_range, f.size, m) for f, m in kept]

        def rebuild(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM hath_files")
            conn.execute("DELETE FROM hath_ranges")
            conn.executemany(
                "INSERT OR REPLACE INTO hath_files(fileid, srange, size, mtime) VALUES (?,?,?,?)",
                rows,
            )
            conn.execute(
                "INSERT INTO hath_ranges(srange, count, bytes, oldest) "
                "SELECT srange, count(*), sum(size), min(mtime) FROM hath_files GROUP BY srange"
            )

        await self.store.write(rebuild)
        await self.reload()
        return summary

    def _scan_blocking(
        self, verify: bool, progress: Callable[[int, int], None] | None
    ) -> tuple[list[tuple[FileId, int]], RescanResult]:
        candidates: list[Path] = []
        for top in sorted(self.root.iterdir()):
            if top.name == TMP_DIR:
                continue
            if top.is_file():
                candidates.append(top)
                continue
            for sub in sorted(top.iterdir()):
                if sub.is_file():
                    candidates.append(sub)
                    continue
                candidates.extend(sorted(p for p in sub.iterdir()))
        total = len(candidates)
        kept: list[tuple[FileId, int]] = []
        removed = moved = size = 0
        for done, path in enumerate(candidates, start=1):
            fid = FileId.try_parse(path.name)
            ok = fid is not None and path.is_file()
            if ok and fid is not None:
                st = path.stat()
                ok = st.st_size == fid.size and (not verify or sha1_file(path) == fid.hash)
            if ok and fid is not None:
                want = self.path_of(fid)
                if path != want:
                    want.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, want)
                    moved += 1
                kept.append((fid, int(want.stat().st_mtime)))
                size += fid.size
            else:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed += 1
            if progress is not None:
                progress(done, total)
        for top in self.root.iterdir():
            if top.name == TMP_DIR or not top.is_dir():
                continue
            for sub in top.iterdir():
                if sub.is_dir():
                    try:
                        sub.rmdir()
                    except OSError:
                        pass
            try:
                top.rmdir()
            except OSError:
                pass
        return kept, RescanResult(kept=len(kept), removed=removed, moved=moved, bytes=size)
