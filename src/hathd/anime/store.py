"""The anime library's tables in the daemon's SQLite store (component ``anime``, versioned
through :meth:`hathd.store.Store.migrate`).

- ``anime_series``: one row per series (key, name, site, folder, description, status, cover
  URL, year, followed, checked_at, scan_digest: the digest of its files at its last recorded
  scan, ``NULL`` once a download changed them).
- ``anime_episodes``: (series_key, season, number) with title, languages (JSON array), page
  URL, ``offered`` (listed by the provider), file path (relative to the library root), size
  (bytes), downloaded_at (seconds since the epoch).
- ``anime_episode_jobs``: which queue job fills which episode.
- ``anime_settings``: scheduler settings changed through the API (over the configuration).
- ``anime_hoster_health``: per hoster its health record (JSON, :meth:`HosterHealth.export`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

import attrs

from hathd.anime.model import Episode, EpisodeInfo, Series, SeriesInfo
from hathd.store import Migration, Store

COMPONENT = "anime"

MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE anime_series (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        site TEXT NOT NULL,
        folder TEXT,
        description TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'ongoing' CHECK (status IN ('ongoing', 'completed')),
        cover_url TEXT,
        year INTEGER
    );
    CREATE TABLE anime_episodes (
        series_key TEXT NOT NULL REFERENCES anime_series(key) ON DELETE CASCADE,
        season INTEGER NOT NULL CHECK (season >= 0),
        number INTEGER NOT NULL CHECK (number >= 0),
        title TEXT NOT NULL DEFAULT '',
        languages TEXT NOT NULL DEFAULT '[]',
        url TEXT,
        offered INTEGER NOT NULL DEFAULT 0,
        file_path TEXT,
        size INTEGER,
        downloaded_at REAL,
        PRIMARY KEY (series_key, season, number)
    );
    CREATE TABLE anime_episode_jobs (
        job_id TEXT PRIMARY KEY,
        series_key TEXT NOT NULL,
        season INTEGER NOT NULL,
        number INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX anime_episode_jobs_episode ON anime_episode_jobs (series_key, season, number);
    """,
    """
    ALTER TABLE anime_series ADD COLUMN followed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE anime_series ADD COLUMN checked_at REAL;
    CREATE TABLE anime_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 3: the digest of a series' files at its last recorded scan (NULL: write it in full)
    """
    ALTER TABLE anime_series ADD COLUMN scan_digest TEXT;
    """,
    # 4: hoster health kept across restarts (HosterHealth.export as JSON)
    """
    CREATE TABLE anime_hoster_health (
        hoster TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
]
"""Schema steps in order; the store records how many ran (``schema_versions``)."""


@attrs.define
class ScanBatch:
    """A part of a scan to record in one transaction: ``local`` series found only on disk
    ``(key, name, site, folder)``; ``folders`` changed folder names ``{key: folder}``;
    ``files`` per series *everything* on disk ``{key: {(season, number): (relative path, size
    bytes)}}`` and ``digests`` ``{key: digest of those files}``."""

    local: list[tuple[str, str, str, str]] = attrs.Factory(list)
    folders: dict[str, str] = attrs.Factory(dict)
    files: dict[str, dict[tuple[int, int], tuple[str, int]]] = attrs.Factory(dict)
    digests: dict[str, str] = attrs.Factory(dict)

    def empty(self) -> bool:
        """Nothing to write."""
        return not (self.local or self.folders or self.files)


def _series(row: sqlite3.Row) -> Series:
    return Series(
        key=row["key"],
        name=row["name"],
        site=row["site"],
        folder=row["folder"],
        description=row["description"],
        status=row["status"],
        cover_url=row["cover_url"],
        year=row["year"],
        followed=bool(row["followed"]),
        checked_at=row["checked_at"],
    )


def _episode(row: sqlite3.Row) -> Episode:
    return Episode(
        series_key=row["series_key"],
        season=row["season"],
        number=row["number"],
        title=row["title"],
        languages=tuple(json.loads(row["languages"])),
        url=row["url"],
        offered=bool(row["offered"]),
        file_path=row["file_path"],
        size=row["size"],
        downloaded_at=row["downloaded_at"],
    )


class AnimeStore:
    """Queries of the anime tables over the daemon's :class:`~hathd.store.Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def migrate(self) -> int:
        """Bring the tables to the newest version; returns it."""
        return await self.store.migrate(COMPONENT, MIGRATIONS)

    # -- series ----------------------------------------------------------------------------

    async def upsert_series(self, site: str, info: SeriesInfo) -> None:
        """Insert or update a series from its provider page (folder and follow flag kept)."""
        await self.store.execute(
            "INSERT INTO anime_series (key, name, site, description, status, cover_url, year)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET name = excluded.name,"
            " site = excluded.site, description = excluded.description,"
            " status = excluded.status, cover_url = excluded.cover_url, year = excluded.year",
            (info.key, info.name, site, info.description, info.status, info.cover_url, info.year),
        )

    async def add_local_series(self, key: str, name: str, site: str, folder: str) -> None:
        """Record a series found on disk only (not yet read from its provider)."""
        await self.store.execute(
            "INSERT INTO anime_series (key, name, site, folder) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET folder = excluded.folder",
            (key, name, site, folder),
        )

    async def set_folder(self, key: str, folder: str) -> None:
        """The series' folder name in the library."""
        await self.store.execute("UPDATE anime_series SET folder = ? WHERE key = ?", (folder, key))

    async def set_followed(self, key: str, followed: bool) -> bool:
        """Follow or unfollow; ``False`` for an unknown key."""
        n = await self.store.execute(
            "UPDATE anime_series SET followed = ? WHERE key = ?", (int(followed), key)
        )
        return n > 0

    async def set_checked(self, key: str, when: float) -> None:
        """When the provider was last read for ``key``."""
        await self.store.execute(
            "UPDATE anime_series SET checked_at = ? WHERE key = ?", (when, key)
        )

    async def series(self, key: str) -> Series | None:
        """One series, or ``None``."""
        rows = await self.store.query("SELECT * FROM anime_series WHERE key = ?", (key,))
        return _series(rows[0]) if rows else None

    async def all_series(self) -> list[Series]:
        """Every series by name."""
        rows = await self.store.query("SELECT * FROM anime_series ORDER BY name COLLATE NOCASE")
        return [_series(r) for r in rows]

    async def missing_counts(self) -> dict[str, int]:
        """Per series key: episodes offered and not present."""
        rows = await self.store.query(
            "SELECT series_key, count(*) AS n FROM anime_episodes"
            " WHERE offered = 1 AND file_path IS NULL GROUP BY series_key"
        )
        return {r["series_key"]: r["n"] for r in rows}

    # -- episodes --------------------------------------------------------------------------

    async def offer_episodes(self, key: str, episodes: Iterable[EpisodeInfo]) -> None:
        """Record what the provider offers (title, languages, URL); disk fields kept."""
        rows = [
            (key, e.season, e.number, e.title, json.dumps(list(e.languages)), e.url)
            for e in episodes
        ]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO anime_episodes (series_key, season, number, title, languages, url,"
                " offered) VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT (series_key, season, number)"
                " DO UPDATE SET title = excluded.title, languages = excluded.languages,"
                " url = excluded.url, offered = 1",
                rows,
            )

        await self.store.write(run)

    async def scan_digests(self) -> dict[str, str]:
        """Per series key: the digest of its files at its last recorded scan (series whose
        files changed since, by a scan or a download, have none)."""
        rows = await self.store.query(
            "SELECT key, scan_digest FROM anime_series WHERE scan_digest IS NOT NULL"
        )
        return {r[0]: r[1] for r in rows}

    async def record_scan(self, batch: ScanBatch) -> None:
        """Record a part of a scan in one transaction (see :class:`ScanBatch`): series found
        only on disk, changed folders, and for each series in ``batch.files`` exactly what lies
        on disk (its other episodes lose their file) with its new digest."""
        local = batch.local
        folders = [(folder, key) for key, folder in batch.folders.items()]
        keys = list(batch.files)
        changed = [
            (key, season, number, path, size)
            for key, files in batch.files.items()
            for (season, number), (path, size) in files.items()
        ]
        digests = [(digest, key) for key, digest in batch.digests.items()]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO anime_series (key, name, site, folder) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET folder = excluded.folder",
                local,
            )
            conn.executemany("UPDATE anime_series SET folder = ? WHERE key = ?", folders)
            # one query for every series of the batch (not one per series)
            files_of = batch.files
            gone = [
                (key, season, number)
                for key, season, number in conn.execute(
                    "SELECT series_key, season, number FROM anime_episodes"
                    " WHERE file_path IS NOT NULL"
                    " AND series_key IN (SELECT value FROM json_each(?))",
                    (json.dumps(keys),),
                )
                if (season, number) not in files_of[key]
            ]
            conn.executemany(
                "UPDATE anime_episodes SET file_path = NULL, size = NULL"
                " WHERE series_key = ? AND season = ? AND number = ?",
                gone,
            )
            # an unchanged row is left as it is (no new row version written)
            conn.executemany(
                "INSERT INTO anime_episodes (series_key, season, number, file_path, size)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (series_key, season, number) DO UPDATE SET"
                " file_path = excluded.file_path, size = excluded.size"
                " WHERE file_path IS NOT excluded.file_path OR size IS NOT excluded.size",
                changed,
            )
            conn.executemany("UPDATE anime_series SET scan_digest = ? WHERE key = ?", digests)

        await self.store.write(run)

    async def landed(
        self, key: str, season: int, number: int, path: str, size: int, when: float | None = None
    ) -> None:
        """An episode file was placed (``path`` relative to the library root); the series'
        scan digest is cleared (its next scan writes it in full)."""
        values = (key, season, number, path, size, time.time() if when is None else when)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO anime_episodes (series_key, season, number, file_path, size,"
                " downloaded_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (series_key, season,"
                " number) DO UPDATE SET file_path = excluded.file_path, size = excluded.size,"
                " downloaded_at = excluded.downloaded_at",
                values,
            )
            conn.execute("UPDATE anime_series SET scan_digest = NULL WHERE key = ?", (key,))

        await self.store.write(run)

    async def episodes(self, key: str) -> list[Episode]:
        """The episodes of ``key`` by season and number."""
        rows = await self.store.query(
            "SELECT * FROM anime_episodes WHERE series_key = ? ORDER BY season, number", (key,)
        )
        return [_episode(r) for r in rows]

    async def missing(self, key: str | None = None) -> list[Episode]:
        """Offered and not present (of one series or all)."""
        sql = "SELECT * FROM anime_episodes WHERE offered = 1 AND file_path IS NULL"
        params: tuple[Any, ...] = ()
        if key is not None:
            sql += " AND series_key = ?"
            params = (key,)
        rows = await self.store.query(sql + " ORDER BY series_key, season, number", params)
        return [_episode(r) for r in rows]

    # -- jobs ------------------------------------------------------------------------------

    async def link_job(self, job_id: str, key: str, season: int, number: int) -> None:
        """Remember that ``job_id`` fills the episode."""
        await self.store.execute(
            "INSERT OR REPLACE INTO anime_episode_jobs VALUES (?, ?, ?, ?, ?)",
            (job_id, key, season, number, time.time()),
        )

    async def episode_jobs(self, key: str) -> dict[tuple[int, int], str]:
        """``{(season, number): newest job id}`` of a series."""
        rows = await self.store.query(
            "SELECT season, number, job_id FROM anime_episode_jobs WHERE series_key = ?"
            " ORDER BY created_at",
            (key,),
        )
        return {(r["season"], r["number"]): r["job_id"] for r in rows}

    # -- settings --------------------------------------------------------------------------

    async def hoster_health(self) -> dict[str, Any]:
        """Per hoster: its stored health record (:meth:`HosterHealth.export` data; a row
        that is not valid JSON is left out)."""
        rows = await self.store.query("SELECT hoster, state FROM anime_hoster_health")
        out: dict[str, Any] = {}
        for hoster, state in rows:
            try:
                out[hoster] = json.loads(state)
            except ValueError:
                continue
        return out

    async def save_hoster_health(self, records: dict[str, dict[str, Any]]) -> None:
        """Store the health records ``{hoster: export data}`` in one transaction."""
        now = time.time()
        rows = [(h, json.dumps(r, allow_nan=False), now) for h, r in records.items()]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO anime_hoster_health (hoster, state, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (hoster) DO UPDATE SET state = excluded.state,"
                " updated_at = excluded.updated_at",
                rows,
            )

        await self.store.write(run)

    async def settings(self) -> dict[str, Any]:
        """Settings stored through the API."""
        rows = await self.store.query("SELECT name, value FROM anime_settings")
        return {r["name"]: json.loads(r["value"]) for r in rows}

    async def put_settings(self, values: dict[str, Any]) -> None:
        """Store settings (JSON values)."""

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR REPLACE INTO anime_settings VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

        await self.store.write(run)
