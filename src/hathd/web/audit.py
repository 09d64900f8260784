"""The audit trail: who made each state-changing API call, and who submitted each job.

Every request that is not GET/HEAD/OPTIONS and carries credentials (a session, an API key, the
unix socket), refused or not, leaves one row of ``audit`` (component ``web-audit``):

- ``audit(id, time, user, via, session_id, key_id, method, path, status, address, on_behalf,
  request_id)`` — ``time`` in Unix seconds; ``via`` is ``session``, ``key``, ``socket``,
  ``approval`` (the app submitting a request an operator approved: ``on_behalf`` names who
  asked, ``request_id`` the request) or ``login`` (a successful login or setup, which has no
  credentials before it); ``path`` includes the query string (at most 500 characters).
  Failed logins are not rows here: the lockout counts them per address.
- ``audit_jobs(job_id, audit_id, user, via, on_behalf, request_id, time)`` — the jobs each
  call created. The engine calls :func:`note_jobs` on the submitting task (its
  ``submit_observers``), so the jobs created by the request's own task are attributed to it.

Job replies (``GET /api/v1/jobs`` and ``GET /api/v1/jobs/<id>``) get a ``submitted_by`` field,
``{"user", "via", "time", "on_behalf", "request_id"}`` or null, from ``audit_jobs``.

Retention: at every insert, rows older than ``[admin] audit_keep_days`` and rows beyond the
newest ``[admin] audit_keep_rows`` are deleted (``audit_jobs`` by age only).

A failure to write the trail is logged and never fails the request it describes.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
from quart import Blueprint, Response, request
from quart_trio import QuartTrio

from hathd.errors import HathdError
from hathd.runtime import Runtime
from hathd.store import Migration, Store
from hathd.web.auth import (
    SAFE_METHODS,
    client_address,
    current_principal,
    error,
)

log = logging.getLogger(__name__)

MIGRATIONS: Final[list[Migration]] = [
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        user TEXT NOT NULL,
        via TEXT NOT NULL,
        session_id TEXT,
        key_id TEXT,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        status INTEGER NOT NULL,
        address TEXT NOT NULL,
        on_behalf TEXT,
        request_id INTEGER
    );
    CREATE INDEX audit_time ON audit(time);
    CREATE TABLE audit_jobs (
        job_id TEXT PRIMARY KEY,
        audit_id INTEGER NOT NULL,
        user TEXT NOT NULL,
        via TEXT NOT NULL,
        on_behalf TEXT,
        request_id INTEGER,
        time REAL NOT NULL
    );
    CREATE INDEX audit_jobs_time ON audit_jobs(time);
    """,
]

ON_BEHALF: Final = "hathd.on_behalf"
"""ASGI scope extension of an approval's internal request: ``(username, request_id)`` of the
request it carries out (:mod:`hathd.web.requests`)."""

MAX_PATH: Final = 500
"""Characters of the path and query kept per row."""

_JOBS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "hathd_audit_jobs", default=None
)


@attrs.frozen
class Entry:
    """One audit row before it is written."""

    time: float
    user: str
    via: str
    session_id: str | None
    key_id: str | None
    method: str
    path: str
    status: int
    address: str
    on_behalf: str | None = None
    request_id: int | None = None


async def migrate(store: Store) -> None:
    """Create or upgrade the audit tables."""
    await store.migrate("web-audit", MIGRATIONS)


def note_jobs(jobs: Sequence[Any]) -> None:
    """Engine submit observer: remember the ids of ``jobs`` for the request running on this
    task (nothing when no request is being audited here)."""
    collected = _JOBS.get()
    if collected is not None:
        collected.extend(str(job.id) for job in jobs)


def insert(
    conn: sqlite3.Connection,
    entry: Entry,
    job_ids: Sequence[str],
    keep_days: float,
    keep_rows: int,
) -> int:
    """Write ``entry`` (and the jobs it created), then apply the retention; returns its id."""
    cur = conn.execute(
        "INSERT INTO audit(time, user, via, session_id, key_id, method, path, status, address,"
        " on_behalf, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        attrs.astuple(entry),
    )
    audit_id = int(cur.lastrowid or 0)
    conn.executemany(
        "INSERT OR IGNORE INTO audit_jobs(job_id, audit_id, user, via, on_behalf, request_id,"
        " time) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (job_id, audit_id, entry.user, entry.via, entry.on_behalf, entry.request_id, entry.time)
            for job_id in job_ids
        ],
    )
    cutoff = entry.time - keep_days * 86400
    conn.execute("DELETE FROM audit WHERE time < ?", (cutoff,))
    conn.execute("DELETE FROM audit_jobs WHERE time < ?", (cutoff,))
    conn.execute(
        "DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?)",
        (keep_rows,),
    )
    return audit_id


_COLUMNS: Final = (
    "id",
    "time",
    "user",
    "via",
    "session_id",
    "key_id",
    "method",
    "path",
    "status",
    "address",
    "on_behalf",
    "request_id",
)


def entries(
    conn: sqlite3.Connection,
    *,
    limit: int,
    before: int | None = None,
    user: str | None = None,
    job: str | None = None,
) -> list[dict[str, Any]]:
    """Rows newest first: at most ``limit``, with ids below ``before``, of ``user``, or the
    row that created ``job``. Each row carries ``jobs``, the ids of the jobs it created."""
    sql = f"SELECT {', '.join('a.' + c for c in _COLUMNS)} FROM audit a WHERE 1 = 1"
    params: list[Any] = []
    if before is not None:
        sql += " AND a.id < ?"
        params.append(before)
    if user is not None:
        sql += " AND a.user = ?"
        params.append(user)
    if job is not None:
        sql += " AND a.id IN (SELECT audit_id FROM audit_jobs WHERE job_id = ?)"
        params.append(job)
    sql += " ORDER BY a.id DESC LIMIT ?"
    params.append(limit)
    rows = [dict(zip(_COLUMNS, row, strict=True)) for row in conn.execute(sql, params)]
    for row in rows:
        row["jobs"] = [
            r[0]
            for r in conn.execute(
                "SELECT job_id FROM audit_jobs WHERE audit_id = ? ORDER BY job_id", (row["id"],)
            )
        ]
    return rows


def submitters(conn: sqlite3.Connection, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{job_id: {"user", "via", "time", "on_behalf", "request_id"}}`` for the known ones."""
    out: dict[str, dict[str, Any]] = {}
    ids = list(job_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for row in conn.execute(
            "SELECT job_id, user, via, time, on_behalf, request_id FROM audit_jobs"
            f" WHERE job_id IN ({marks})",
            chunk,
        ):
            out[row[0]] = {
                "user": row[1],
                "via": row[2],
                "time": row[3],
                "on_behalf": row[4],
                "request_id": row[5],
            }
    return out


def install(app: QuartTrio, rt: Runtime, clock: Callable[[], float]) -> None:
    """Record every state-changing request of ``app`` in ``rt``'s store, attribute the jobs
    each creates, and add ``submitted_by`` to job replies; also the ``GET /api/v1/audit``
    route (see :func:`blueprint`)."""

    @app.before_serving
    async def prepare() -> None:
        await migrate(rt.store)
        if rt.engine is not None and note_jobs not in rt.engine.submit_observers:
            rt.engine.submit_observers.append(note_jobs)

    @app.before_request
    async def start() -> None:
        if request.method not in SAFE_METHODS:
            _JOBS.set([])

    @app.after_request
    async def record(reply: Response) -> Response:
        if request.method in SAFE_METHODS:
            if reply.status_code == 200 and request.endpoint in (
                "engine.get_job",
                "engine.list_jobs",
            ):
                await _add_submitters(rt.store, reply)
            return reply
        principal = current_principal()
        if principal is not None:
            who = (principal.username, principal.via)
        elif request.endpoint in ("auth.login", "auth.setup") and reply.status_code < 300:
            # a login has no credentials before it: the user is the one it logged in
            user = await _reply_user(reply)
            if user is None:
                return reply
            who = (user, "login")
        else:
            return reply  # anonymous: nobody to name (failed logins count in the lockout)
        behalf = (request.scope.get("extensions") or {}).get(ON_BEHALF)
        on_behalf, request_id = behalf if isinstance(behalf, tuple) else (None, None)
        path = request.full_path.rstrip("?") if request.query_string else request.path
        entry = Entry(
            time=clock(),
            user=who[0],
            via=who[1],
            session_id=principal.session_id if principal else None,
            key_id=principal.key_id if principal else None,
            method=request.method,
            path=path[:MAX_PATH],
            status=reply.status_code,
            address=client_address(request.scope),
            on_behalf=on_behalf,
            request_id=request_id,
        )
        created = list(_JOBS.get() or []) if reply.status_code < 400 else []
        keep = rt.config.admin
        try:
            await rt.store.write(
                lambda conn: insert(
                    conn, entry, created, keep.audit_keep_days, keep.audit_keep_rows
                )
            )
        except HathdError:
            log.exception("audit: could not record %s %s", entry.method, entry.path)
        return reply


async def _reply_user(reply: Response) -> str | None:
    try:
        body = json.loads(await reply.get_data())
    except (ValueError, UnicodeDecodeError):
        return None
    user = body.get("user") if isinstance(body, dict) else None
    return user if isinstance(user, str) else None


async def _add_submitters(store: Store, reply: Response) -> None:
    """Add ``submitted_by`` to a job reply (one job, or ``{"jobs": [...]}``)."""
    try:
        body = json.loads(await reply.get_data())
    except (ValueError, UnicodeDecodeError):
        return
    if not isinstance(body, dict):
        return
    jobs = body.get("jobs") if "jobs" in body else [body]
    if not isinstance(jobs, list):
        return
    ids = [j["id"] for j in jobs if isinstance(j, dict) and isinstance(j.get("id"), str)]
    found = await store.read(lambda conn: submitters(conn, ids)) if ids else {}
    for job in jobs:
        if isinstance(job, dict) and isinstance(job.get("id"), str):
            job["submitted_by"] = found.get(job["id"])
    reply.set_data(json.dumps(body))


def _int_arg(name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadArg(name, "must be an integer") from None
    if not lo <= value <= hi:
        raise _BadArg(name, f"must be between {lo} and {hi}")
    return value


class _BadArg(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def blueprint(store: Store) -> Blueprint:
    """``GET /api/v1/audit?limit=100&before=<id>&user=<name>&job=<job id>`` →
    ``{"entries": [...]}``, newest first (``limit`` 1–1000); page with ``before`` set to the
    last id seen."""
    bp = Blueprint("audit", __name__)

    @bp.get("/api/v1/audit")
    async def audit_entries() -> Response | dict[str, Any]:
        try:
            limit = _int_arg("limit", 100, 1, 1000) or 100
            before = _int_arg("before", None, 1, 2**62)
        except _BadArg as exc:
            return error(400, "invalid_input", str(exc), field=exc.field)
        user = request.args.get("user") or None
        job = request.args.get("job") or None
        rows = await store.read(
            lambda conn: entries(conn, limit=limit, before=before, user=user, job=job)
        )
        return {"entries": rows}

    return bp
