"""The label outbox: ``HASH\\tLABEL`` messages stored durably until the broker has them.

A label is written to the ``q4d_labels`` table first (by the ingest service for ``QUEUED``, by
the engine's ``on_final`` hook for ``DONE``/``NOPE``) and deleted only after the broker
acknowledged its publication (PUBACK/PUBCOMP). Labels therefore survive a broker outage and a
restart of hathd; after a lost acknowledgement a label may be published twice, which the
seedbox's labeller (``LabelD.sh``: set the torrent's label) tolerates.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import trio

from hathd.engine.api import Job, JobState
from hathd.q4d.config import Q4DConfig
from hathd.q4d.payload import NOT_USED
from hathd.store import Store

SCHEMA: list[str] = [
    """
    CREATE TABLE q4d_labels (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        hash TEXT NOT NULL,
        label TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE q4d_rejected (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at REAL NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        payload BLOB NOT NULL
    );
    """
]
"""The ``q4d`` component's migrations (labels outbox, last rejected payloads)."""


class LabelOutbox:
    """Labels waiting for the broker, in the order they were put."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._wakeup = trio.Event()

    async def put(self, labels: Sequence[tuple[str, str]]) -> None:
        """Store ``(hash, label)`` pairs durably (one transaction) and wake the publisher.

        :raises hathd.errors.HathdError: the store could not commit.
        """
        if not labels:
            return
        now = time.time()

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO q4d_labels (hash, label, created_at) VALUES (?, ?, ?)",
                [(h, label, now) for h, label in labels],
            )

        await self._store.write(write)
        self._wakeup.set()

    async def pending(self, limit: int = 100) -> list[tuple[int, str, str]]:
        """The oldest ``limit`` labels as ``(id, hash, label)``."""
        rows = await self._store.query(
            "SELECT id, hash, label FROM q4d_labels ORDER BY id LIMIT ?", (limit,)
        )
        return [(int(r["id"]), str(r["hash"]), str(r["label"])) for r in rows]

    async def remove(self, label_id: int) -> None:
        """Forget a label the broker acknowledged."""
        await self._store.execute("DELETE FROM q4d_labels WHERE id = ?", (label_id,))

    async def count(self) -> int:
        """Labels not yet acknowledged by the broker."""
        rows = await self._store.query("SELECT COUNT(*) AS n FROM q4d_labels")
        return int(rows[0]["n"])

    async def wait_new(self) -> None:
        """Return once :meth:`put` was called since the last return."""
        await self._wakeup.wait()
        self._wakeup = trio.Event()


def final_label(config: Q4DConfig, job: Job) -> tuple[str, str] | None:
    """The label a finished transfer job earns, or ``None`` (labelling off, no hash)."""
    if not config.labelling or job.kind != "transfer":
        return None
    hash_ = str(job.params.get("hash", ""))
    if not hash_ or hash_ == NOT_USED:
        return None
    if job.state == JobState.DONE:
        return hash_, config.label_done
    if job.state == JobState.FAILED:
        return hash_, config.label_nope
    return None
