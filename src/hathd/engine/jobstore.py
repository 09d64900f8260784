"""The job table: schema migrations and the SQL of every transition.

Every function taking ``conn`` runs inside the store's writer thread (``await store.write(fn)``)
or on a reader connection, never on the Trio thread. Transitions are conditional on the
expected current state (``UPDATE … WHERE state IN (…) RETURNING *``) so a stale request changes
nothing and returns ``None``.
"""

from __future__ import annotations

import json
import operator
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from hathd.engine.api import ACTIVE_STATES, Job, JobState, Progress
from hathd.engine.states import JobEvent, next_state

SCHEMA: list[str] = [
    """
    CREATE TABLE engine_jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        domain TEXT NOT NULL,
        state TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        position INTEGER NOT NULL,
        source TEXT NOT NULL DEFAULT 'api',
        source_id TEXT,
        dedupe_key TEXT,
        params TEXT NOT NULL DEFAULT '{}',
        result TEXT,
        error TEXT,
        error_class TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        not_before REAL,
        retry_preset TEXT,
        timeout REAL,
        paused_by TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE INDEX engine_jobs_state ON engine_jobs(state, kind);
    CREATE UNIQUE INDEX engine_jobs_dedupe ON engine_jobs(kind, dedupe_key)
        WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running', 'waiting', 'paused');
    CREATE TABLE engine_flags (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: handler state kept between tries (a download's resume validator)
    """
    ALTER TABLE engine_jobs ADD COLUMN checkpoint TEXT;
    """,
]
"""Migrations of component ``engine`` (applied with ``store.migrate("engine", SCHEMA)``)."""

_ACTIVE_SQL = "('queued', 'running', 'waiting', 'paused')"
_JSON_COLUMNS = frozenset({"params", "result", "checkpoint"})
_COLUMNS = [f.name for f in attrs.fields(Job) if f.name != "progress"]
_INSERT_SQL = (
    f"INSERT INTO engine_jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)


_RETURNING = ", ".join(_COLUMNS)
_GET_COLUMNS = operator.attrgetter(*_COLUMNS)
_JSON_I = tuple(_COLUMNS.index(c) for c in sorted(_JSON_COLUMNS))
_STATE_I = _COLUMNS.index("state")
_PARAMS_I = _COLUMNS.index("params")
_OPTIONAL_JSON_I = (_COLUMNS.index("result"), _COLUMNS.index("checkpoint"))


def _values_to_job(values: Sequence[Any]) -> Job:
    # ``values`` in the order of _COLUMNS (an explicit column list, never ``*``)
    v = list(values)
    v[_STATE_I] = JobState(v[_STATE_I])
    v[_PARAMS_I] = json.loads(v[_PARAMS_I]) if v[_PARAMS_I] else {}
    for i in _OPTIONAL_JSON_I:
        v[i] = json.loads(v[i]) if v[i] else None
    return Job(*v)


def _dumps(value: Any) -> str:
    # strict JSON: NaN and infinities would make every later reply invalid JSON
    return json.dumps(value, allow_nan=False)


def row_to_job(row: sqlite3.Row) -> Job:
    """A :class:`Job` from an ``engine_jobs`` row."""
    return Job(
        id=row["id"],
        kind=row["kind"],
        target=row["target"],
        domain=row["domain"],
        state=JobState(row["state"]),
        priority=row["priority"],
        position=row["position"],
        source=row["source"],
        source_id=row["source_id"],
        dedupe_key=row["dedupe_key"],
        params=json.loads(row["params"]) if row["params"] else {},
        result=json.loads(row["result"]) if row["result"] else None,
        error=row["error"],
        error_class=row["error_class"],
        attempts=row["attempts"],
        not_before=row["not_before"],
        retry_preset=row["retry_preset"],
        timeout=row["timeout"],
        paused_by=row["paused_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        checkpoint=json.loads(row["checkpoint"]) if row["checkpoint"] else None,
    )


def job_to_json(job: Job) -> dict[str, Any]:
    """The job as JSON-ready data (the payload of API replies and ``jobs`` events)."""
    data: dict[str, Any] = dict(zip(_COLUMNS, _GET_COLUMNS(job), strict=True))
    data["state"] = str(job.state)
    data["progress"] = progress_to_json(job.progress) if job.progress else None
    return data


def progress_to_json(progress: Progress) -> dict[str, Any]:
    """A :class:`Progress` as JSON-ready data (bytes or items, units/s, seconds)."""
    return attrs.asdict(progress)


def insert_job(conn: sqlite3.Connection, job: Job) -> tuple[Job, bool]:
    """Insert ``job`` unless an active job of the same kind and ``dedupe_key`` exists; returns
    the stored job and whether it was created."""
    if job.dedupe_key is not None:
        row = conn.execute(
            "SELECT * FROM engine_jobs WHERE kind = ? AND dedupe_key = ? "
            f"AND state IN {_ACTIVE_SQL}",
            (job.kind, job.dedupe_key),
        ).fetchone()
        if row is not None:
            return row_to_job(row), False
    conn.execute(_INSERT_SQL, _insert_values(job))
    return job, True


def _insert_values(job: Job) -> list[Any]:
    values = list(_GET_COLUMNS(job))
    values[_STATE_I] = str(job.state)
    for i in _JSON_I:
        if values[i] is not None:
            values[i] = _dumps(values[i])
    return values


def insert_jobs(conn: sqlite3.Connection, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
    """:func:`insert_job` for each, in one transaction (one ``executemany`` when no job has
    a ``dedupe_key``)."""
    if any(job.dedupe_key is not None for job in jobs):
        return [insert_job(conn, job) for job in jobs]
    conn.executemany(_INSERT_SQL, [_insert_values(job) for job in jobs])
    return [(job, True) for job in jobs]


def transition(
    conn: sqlite3.Connection,
    job_id: str,
    expect: Iterable[JobState],
    changes: dict[str, Any],
    *,
    bump_attempts: bool = False,
) -> Job | None:
    """Apply ``changes`` (column → value; ``state`` as :class:`JobState`; ``params``,
    ``result``, ``checkpoint`` as mappings) to ``job_id`` if its state is in ``expect``;
    returns the new row or ``None``."""
    sets: list[str] = []
    params: list[Any] = []
    for column, value in changes.items():
        if column not in _COLUMNS:
            raise ValueError(f"unknown column {column!r}")
        if column == "state":
            value = str(value)
        elif column in _JSON_COLUMNS and value is not None:
            value = _dumps(value)
        sets.append(f"{column} = ?")
        params.append(value)
    if bump_attempts:
        sets.append("attempts = attempts + 1")
    states = [str(s) for s in expect]
    sql = (
        f"UPDATE engine_jobs SET {', '.join(sets)} WHERE id = ? "
        f"AND state IN ({', '.join('?' * len(states))}) RETURNING {_RETURNING}"
    )
    row = conn.execute(sql, [*params, job_id, *states]).fetchone()
    return None if row is None else _values_to_job(row)


def set_positions(conn: sqlite3.Connection, positions: dict[str, int], now: float) -> list[Job]:
    """Set the ``position`` of several jobs; returns the changed rows."""
    out: list[Job] = []
    for job_id, position in positions.items():
        row = conn.execute(
            "UPDATE engine_jobs SET position = ?, updated_at = ? WHERE id = ? RETURNING *",
            (position, now, job_id),
        ).fetchone()
        if row is not None:
            out.append(row_to_job(row))
    return out


def set_checkpoint(conn: sqlite3.Connection, job_id: str, data: dict[str, Any] | None) -> None:
    """Store (``None``: clear) the handler state of ``job_id``."""
    conn.execute(
        "UPDATE engine_jobs SET checkpoint = ? WHERE id = ?",
        (None if data is None else _dumps(data), job_id),
    )


def recover(conn: sqlite3.Connection, now: float) -> tuple[list[Job], int]:
    """Start-up: jobs left ``running`` go back to ``queued``; returns every active job and the
    number requeued."""
    # a try cut short by a crash or a kill ends without an outcome: the table's ``requeue``
    requeued = conn.execute(
        "UPDATE engine_jobs SET state = ?, updated_at = ? WHERE state = ?",
        (str(next_state(JobState.RUNNING, JobEvent.REQUEUE)), now, str(JobState.RUNNING)),
    ).rowcount
    rows = conn.execute(
        f"SELECT * FROM engine_jobs WHERE state IN {_ACTIVE_SQL} ORDER BY priority DESC, position"
    ).fetchall()
    return [row_to_job(r) for r in rows], requeued


def max_position(conn: sqlite3.Connection) -> int:
    """The largest position in use (0 for an empty table)."""
    row = conn.execute("SELECT MAX(position) FROM engine_jobs").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def get_job(conn: sqlite3.Connection, job_id: str) -> Job | None:
    """The job ``job_id`` or ``None``."""
    row = conn.execute("SELECT * FROM engine_jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else row_to_job(row)


def find_active(conn: sqlite3.Connection, kind: str, dedupe_key: str) -> Job | None:
    """The active job of ``kind`` with ``dedupe_key``, or ``None``."""
    row = conn.execute(
        f"SELECT * FROM engine_jobs WHERE kind = ? AND dedupe_key = ? AND state IN {_ACTIVE_SQL}",
        (kind, dedupe_key),
    ).fetchone()
    return None if row is None else row_to_job(row)


def list_jobs(
    conn: sqlite3.Connection,
    *,
    states: Sequence[str] = (),
    kind: str | None = None,
    domain: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Job], int]:
    """Jobs matching the filters in queue order (active first by priority and position, then
    history newest first); returns a page and the total count."""
    where: list[str] = []
    params: list[Any] = []
    if states:
        where.append(f"state IN ({', '.join('?' * len(states))})")
        params.extend(states)
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    if domain is not None:
        where.append("domain = ?")
        params.append(domain)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    total = conn.execute(f"SELECT COUNT(*) FROM engine_jobs {clause}", params).fetchone()[0]
    rows = conn.execute(
        f"SELECT * FROM engine_jobs {clause} ORDER BY "
        f"CASE WHEN state IN {_ACTIVE_SQL} THEN 0 ELSE 1 END, "
        "CASE WHEN state IN ('queued','running','waiting','paused') THEN -priority ELSE 0 END, "
        "CASE WHEN state IN ('queued','running','waiting','paused') THEN position "
        "ELSE -COALESCE(finished_at, updated_at) END LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    return [row_to_job(r) for r in rows], int(total)


def delete_jobs(conn: sqlite3.Connection, job_ids: Sequence[str]) -> int:
    """Delete finished jobs (``done``/``failed``/``cancelled``) by id; returns how many."""
    count = 0
    for job_id in job_ids:
        count += conn.execute(
            "DELETE FROM engine_jobs WHERE id = ? AND state IN ('done','failed','cancelled')",
            (job_id,),
        ).rowcount
    return count


def clear_history(conn: sqlite3.Connection, states: Sequence[str]) -> list[str]:
    """Delete every finished job in ``states``; returns their ids."""
    finished = [s for s in states if s not in {str(a) for a in ACTIVE_STATES}]
    if not finished:
        return []
    marks = ", ".join("?" * len(finished))
    rows = conn.execute(
        f"DELETE FROM engine_jobs WHERE state IN ({marks}) RETURNING id", finished
    ).fetchall()
    return [r[0] for r in rows]


def get_flag(conn: sqlite3.Connection, name: str) -> str | None:
    """A persisted engine flag (e.g. the user's queue pause)."""
    row = conn.execute("SELECT value FROM engine_flags WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def set_flag(conn: sqlite3.Connection, name: str, value: str | None) -> None:
    """Persist (or with ``None`` clear) an engine flag."""
    if value is None:
        conn.execute("DELETE FROM engine_flags WHERE name = ?", (name,))
    else:
        conn.execute(
            "INSERT INTO engine_flags(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
