"""Requests: a viewer asks for a series or a story; an operator or an admin approves or rejects.

Table ``requests`` (component ``web-requests``): ``id``, ``kind`` (``series`` or ``story``),
``target`` (a series URL or library key; a story URL), ``site`` (the anime site, optional),
``note``, ``state`` (``pending``, ``approved``, ``rejected``), ``requested_by`` and
``created``, ``decided_by`` and ``decided``, ``reason`` (of a rejection), ``result`` (JSON:
what the approval submitted; ``jobs`` lists the ids of the jobs it created), ``last_error``
(why the last approval could not submit). Times are Unix seconds.

Approving submits the real work through the app's own routes, as the approver, with the
request's asker noted in the audit trail (:mod:`hathd.web.audit`):

- ``series`` → ``POST /api/v1/anime {"ref": target, "site"?, "follow": true}``: the series is
  added to the library, followed, and its missing episodes queued;
- ``story`` → ``POST /api/v1/fanfic/stories {"urls": [target]}``.

So an approval obeys everything those routes check (a subsystem that is off answers 404, a
bad URL 400): when the submission fails, the request stays pending with ``last_error`` and the
approval answers 409 ``submit_failed`` with the route's status and error.

Routes (scopes in :data:`hathd.web.roles.ROUTES`):

- ``GET /api/v1/requests?state=pending`` → ``{"requests": [...]}``, newest first; a caller
  with the ``read`` scope only (a viewer) sees their own.
- ``POST /api/v1/requests`` ``{"kind", "target", "site"?, "note"?}`` → 201 the request; 409
  ``duplicate_request`` when the same target is pending already.
- ``POST /api/v1/requests/<id>/approve`` → the request, approved; 404, 409 ``not_pending``,
  409 ``submit_failed``.
- ``POST /api/v1/requests/<id>/reject`` ``{"reason"?}`` → the request, rejected; 404, 409.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Final

import attrs
import trio
from quart import Blueprint, Response, current_app, request
from quart_trio import QuartTrio

from hathd.errors import InvalidInput
from hathd.jsonbody import read_object
from hathd.store import Migration, Store
from hathd.web.audit import ON_BEHALF
from hathd.web.auth import (
    INTERNAL_PRINCIPAL,
    Principal,
    WebAuth,
    current_principal,
    error,
)

MIGRATIONS: Final[list[Migration]] = [
    """
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('series', 'story')),
        target TEXT NOT NULL,
        site TEXT,
        note TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),
        requested_by TEXT NOT NULL,
        created REAL NOT NULL,
        decided_by TEXT,
        decided REAL,
        reason TEXT,
        result TEXT,
        last_error TEXT
    );
    CREATE INDEX requests_state ON requests(state, id);
    """,
]

KINDS: Final = ("series", "story")
STATES: Final = ("pending", "approved", "rejected")
MAX_TARGET: Final = 2000
MAX_NOTE: Final = 500

_COLUMNS: Final = (
    "id",
    "kind",
    "target",
    "site",
    "note",
    "state",
    "requested_by",
    "created",
    "decided_by",
    "decided",
    "reason",
    "result",
    "last_error",
)


async def migrate(store: Store) -> None:
    """Create or upgrade the requests table."""
    await store.migrate("web-requests", MIGRATIONS)


def _row(row: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(_COLUMNS, tuple(row), strict=True))
    out["result"] = json.loads(out["result"]) if out["result"] else None
    return out


def get(conn: sqlite3.Connection, request_id: int) -> dict[str, Any] | None:
    """One request, or None."""
    found = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM requests WHERE id = ?", (request_id,)
    ).fetchone()
    return _row(found) if found else None


def listing(
    conn: sqlite3.Connection, state: str | None, asker: str | None, limit: int = 200
) -> list[dict[str, Any]]:
    """Requests newest first, of ``state`` and asked by ``asker`` when given."""
    sql = f"SELECT {', '.join(_COLUMNS)} FROM requests WHERE 1 = 1"
    params: list[Any] = []
    if state is not None:
        sql += " AND state = ?"
        params.append(state)
    if asker is not None:
        sql += " AND requested_by = ?"
        params.append(asker)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return [_row(r) for r in conn.execute(sql, params)]


@attrs.frozen
class NewRequest:
    """A request as asked, checked by :func:`parse`."""

    kind: str
    target: str
    site: str | None
    note: str


def parse(body: dict[str, Any]) -> NewRequest:
    """Check a ``POST /api/v1/requests`` body.

    :raises InvalidInput: a field is missing or wrong (named in ``field``).
    """
    kind = body.get("kind")
    if kind not in KINDS:
        raise InvalidInput("kind", f"one of {', '.join(KINDS)}")
    target = body.get("target")
    if not isinstance(target, str) or not target.strip() or len(target) > MAX_TARGET:
        raise InvalidInput("target", f"a URL or series key of 1 to {MAX_TARGET} characters")
    target = target.strip()
    if kind == "story" and not target.startswith(("http://", "https://")):
        raise InvalidInput("target", "a story is asked for by its http(s) URL")
    if any(c.isspace() for c in target):
        raise InvalidInput("target", "a URL or key has no spaces")
    site = body.get("site")
    if site is not None and (not isinstance(site, str) or not 0 < len(site) <= 100):
        raise InvalidInput("site", "the name of an anime site")
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise InvalidInput("note", f"text of at most {MAX_NOTE} characters")
    return NewRequest(str(kind), target, site, note)


def add(conn: sqlite3.Connection, new: NewRequest, asker: str, now: float) -> dict[str, Any]:
    """Store a pending request; returns it, or ``{"duplicate": id}`` when the same kind and
    target is pending already."""
    same = conn.execute(
        "SELECT id FROM requests WHERE kind = ? AND target = ? AND state = 'pending'",
        (new.kind, new.target),
    ).fetchone()
    if same is not None:
        return {"duplicate": same[0]}
    cur = conn.execute(
        "INSERT INTO requests(kind, target, site, note, state, requested_by, created)"
        " VALUES (?, ?, ?, ?, 'pending', ?, ?)",
        (new.kind, new.target, new.site, new.note, asker, now),
    )
    found = get(conn, int(cur.lastrowid or 0))
    assert found is not None
    return found


def decide(
    conn: sqlite3.Connection,
    request_id: int,
    state: str,
    decider: str,
    now: float,
    *,
    reason: str | None = None,
    result: Any = None,
) -> dict[str, Any] | None:
    """Move a pending request to ``state``; returns it, or None when it was not pending."""
    changed = conn.execute(
        "UPDATE requests SET state = ?, decided_by = ?, decided = ?, reason = ?, result = ?,"
        " last_error = NULL WHERE id = ? AND state = 'pending'",
        (
            state,
            decider,
            now,
            reason,
            None if result is None else json.dumps(result),
            request_id,
        ),
    ).rowcount
    return get(conn, request_id) if changed else None


def submission(req: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The (path, JSON body) that carries out an approved request."""
    if req["kind"] == "series":
        body: dict[str, Any] = {"ref": req["target"], "follow": True, "queue": True}
        if req["site"]:
            body["site"] = req["site"]
        return "/api/v1/anime", body
    return "/api/v1/fanfic/stories", {"urls": [req["target"]]}


async def submit_as(
    app: QuartTrio, principal: Principal, req: dict[str, Any], address: Any
) -> tuple[int, Any]:
    """Send the request's submission to ``app`` itself as ``principal`` (``via`` becomes
    ``approval``); returns the reply's (status, JSON body)."""
    path, body = submission(req)
    acting = attrs.evolve(principal, via="approval", csrf=None)
    client = app.test_client()
    reply = await client.post(
        path,
        json=body,
        scope_base={
            "client": address,
            "server": ("hathd.internal", 0),
            "extensions": {
                INTERNAL_PRINCIPAL: acting,
                ON_BEHALF: (req["requested_by"], req["id"]),
            },
        },
    )
    raw = await reply.get_data(as_text=True)
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = raw
    return reply.status_code, data


def _summary(data: Any) -> dict[str, Any]:
    """The part of a submission's reply kept with the request: the stories created, already
    queued, rejected or disabled, and the series key."""
    if not isinstance(data, dict):
        return {}
    keep = {k: data[k] for k in ("created", "existing", "rejected", "disabled") if k in data}
    series = data.get("series")
    if isinstance(series, dict):
        keep["series"] = series.get("key")
    return keep


def blueprint(auth: WebAuth) -> Blueprint:
    """The request routes over ``auth``'s store."""
    bp = Blueprint("requests", __name__)
    store = auth.store
    deciding = trio.Lock()

    @bp.before_app_serving
    async def prepare() -> None:
        await migrate(store)

    @bp.errorhandler(InvalidInput)
    async def invalid(exc: InvalidInput) -> Response:
        return error(400, exc.code, str(exc), field=exc.field)

    def caller() -> Principal:
        principal = current_principal()
        assert principal is not None  # the auth check let the request in
        return principal

    @bp.get("/api/v1/requests")
    async def list_requests() -> Response | dict[str, Any]:
        state = request.args.get("state") or None
        if state is not None and state not in STATES:
            return error(400, "invalid_input", f"state: one of {', '.join(STATES)}", field="state")
        who = caller()
        asker = who.username if who.scope == "read" else None
        rows = await store.read(lambda conn: listing(conn, state, asker))
        return {"requests": rows}

    @bp.post("/api/v1/requests")
    async def add_request() -> Response | tuple[dict[str, Any], int]:
        new = parse(await read_object(required=False))
        asker = caller().username
        now = auth.clock()
        made = await store.write(lambda conn: add(conn, new, asker, now))
        if "duplicate" in made:
            return error(
                409,
                "duplicate_request",
                f"request {made['duplicate']} asks for this already and is pending",
                id=made["duplicate"],
            )
        return made, 201

    @bp.post("/api/v1/requests/<int:request_id>/approve")
    async def approve(request_id: int) -> Response | dict[str, Any]:
        who = caller()
        async with deciding:
            req = await store.read(lambda conn: get(conn, request_id))
            if req is None:
                return error(404, "not_found", f"no request {request_id}")
            if req["state"] != "pending":
                return error(409, "not_pending", f"request {request_id} is {req['state']}")
            app: QuartTrio = current_app  # type: ignore[assignment]
            status, data = await submit_as(app, who, req, request.scope.get("client"))
            now = auth.clock()
            if status >= 400:
                message = data.get("error") if isinstance(data, dict) else str(data)
                text = f"{status}: {message}"
                await store.write(
                    lambda conn: conn.execute(
                        "UPDATE requests SET last_error = ? WHERE id = ?", (text, request_id)
                    )
                )
                return error(
                    409,
                    "submit_failed",
                    f"the submission was refused ({text}); the request stays pending",
                    submit_status=status,
                )
            result = _summary(data)
            # the jobs the submission created, as the audit trail attributed them to it
            result["jobs"] = [
                row[0]
                for row in await store.query(
                    "SELECT job_id FROM audit_jobs WHERE request_id = ? ORDER BY job_id",
                    (request_id,),
                )
            ]
            done = await store.write(
                lambda conn: decide(conn, request_id, "approved", who.username, now, result=result)
            )
        assert done is not None  # the lock kept it pending
        return done

    @bp.post("/api/v1/requests/<int:request_id>/reject")
    async def reject(request_id: int) -> Response | dict[str, Any]:
        body = await read_object(required=False)
        reason = body.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_NOTE):
            raise InvalidInput("reason", f"text of at most {MAX_NOTE} characters")
        who = caller()
        now = auth.clock()
        async with deciding:
            done = await store.write(
                lambda conn: decide(conn, request_id, "rejected", who.username, now, reason=reason)
            )
            if done is None:
                req = await store.read(lambda conn: get(conn, request_id))
                if req is None:
                    return error(404, "not_found", f"no request {request_id}")
                return error(409, "not_pending", f"request {request_id} is {req['state']}")
        return done

    return bp
