"""The job API (a quart Blueprint, mounted by the admin app with no prefix).

Routes (JSON in and out; every job is the full record of :func:`jobstore.job_to_json`):

- ``POST /api/v1/jobs`` — one job (an object) or a batch (``{"jobs": [...]}`` or a list).
  A job is either a download shorthand ``{"url", "dest"?, "filename"?, "size"?, "sha256"?,
  "priority"?}`` or a full spec ``{"kind", "target", "domain", "params"?, "priority"?,
  "dedupe_key"?, "retry_preset"?, "timeout"?}``. Reply ``201`` ``{"job", "created"}`` for one,
  ``{"jobs": [{"job", "created"}, ...]}`` for a batch (stored in one transaction).
- ``GET /api/v1/jobs?state=a,b&kind=&domain=&limit=100&offset=0`` — a page in queue order:
  ``{"jobs", "total", "limit", "offset", "queue_paused"}``.
- ``GET /api/v1/jobs/{id}`` — one job (with live progress while it runs).
- ``POST /api/v1/jobs/{id}/pause|resume|retry`` — the job after the transition.
- ``POST /api/v1/jobs/{id}/move`` ``{"position"?: int, "how"?: "set"|"cur"|"end",
  "priority"?: int}`` — ``{"id", "priority", "position"}`` (the 0-based place reached).
- ``DELETE /api/v1/jobs/{id}`` — cancels an active job, deletes a finished one.
- ``DELETE /api/v1/jobs?state=done[,failed,cancelled]`` — clears history: ``{"removed": n}``.
- ``GET /api/v1/queue``, ``POST /api/v1/queue/pause|resume`` — ``{"paused": [reasons], ...}``.

Bodies are strict JSON, read by :func:`hathd.jsonbody.read_json`: ``NaN``, ``Infinity``,
numbers too large for a float, lone surrogates and too deep nesting are refused (``400`` naming
the field). Priorities are integers within ±10⁹; move positions within 10⁹.

Errors: ``400`` (bad input: :class:`~hathd.errors.InvalidInput`), ``404`` (no such job:
:class:`~hathd.errors.JobNotFound`), ``409`` (the job's state forbids the operation:
:class:`~hathd.errors.JobConflict`), each ``{"error": "...", "code": "...", "field": "..."}``:
``error`` is the message, ``code`` the stable code of the exception class (``invalid_input``,
``job_not_found``, ``job_conflict``, ``invalid_transition``; the tree is in
:mod:`hathd.errors`), ``field`` names the offending input when there is one. Any other
exception is an internal error (``500``).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request

from hathd.engine.api import InvalidInput, JobSpec
from hathd.engine.core import Engine, JobConflict, JobNotFound, check_priority, check_timeout
from hathd.engine.download import download_spec
from hathd.engine.jobstore import job_to_json
from hathd.errors import HathdError
from hathd.jsonbody import MalformedBody, read_json
from hathd.supervisor import to_plain

MAX_BATCH = 10_000
MAX_PAGE = 1000
_SPEC_KEYS = {
    "kind",
    "target",
    "domain",
    "params",
    "priority",
    "dedupe_key",
    "retry_preset",
    "timeout",
    "source",
    "source_id",
}
_URL_KEYS = {"url", "dest", "filename", "size", "sha256", "priority"}


class BadRequest(InvalidInput):
    """Invalid input to the API; ``field`` names it (answered ``400``)."""


def _error(status: int, exc: HathdError, field: str | None = None) -> tuple[dict[str, Any], int]:
    """The JSON error reply: ``{"error": message, "code": exc.code, "field": field}``."""
    body: dict[str, Any] = {"error": str(exc), "code": exc.code}
    if field is not None:
        body["field"] = field
    return body, status


def _int(value: Any, field: str) -> int | None:
    """``None`` or an integer.

    :raises BadRequest: naming ``field``.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(field, f"must be an integer, got {value!r}")
    return value


def _priority(value: Any, field: str) -> int:
    """The engine's :func:`~hathd.engine.core.check_priority`, answered as ``field``."""
    try:
        return check_priority(value)
    except InvalidInput as exc:
        raise BadRequest(field, exc.message) from None


def _str(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(field, f"must be a string, got {value!r}")
    return value


def parse_job(item: Any, prefix: str = "") -> JobSpec:
    """A :class:`JobSpec` from one JSON job (download shorthand or full spec).

    :raises BadRequest: naming the field (``jobs[2].url``…).
    """
    if not isinstance(item, dict):
        raise BadRequest(prefix.rstrip(".") or "body", "a job must be a JSON object")
    if "url" in item:
        unknown = set(item) - _URL_KEYS
        if unknown:
            raise BadRequest(prefix + sorted(unknown)[0], "unknown key")
        url = _str(item["url"], prefix + "url")
        if not url:
            raise BadRequest(prefix + "url", "must be a non-empty string")
        try:
            return download_spec(
                url,
                dest=_str(item.get("dest"), prefix + "dest"),
                filename=_str(item.get("filename"), prefix + "filename"),
                size=_int(item.get("size"), prefix + "size"),
                sha256=_str(item.get("sha256"), prefix + "sha256"),
                priority=_priority(item.get("priority", 0), prefix + "priority"),
            )
        except ValueError as exc:
            if isinstance(exc, BadRequest):
                raise
            raise BadRequest(prefix + "url", str(exc).removeprefix("target: ")) from None
    unknown = set(item) - _SPEC_KEYS
    if unknown:
        raise BadRequest(prefix + sorted(unknown)[0], "unknown key")
    for key in ("kind", "target", "domain"):
        if not isinstance(item.get(key), str) or not item[key]:
            raise BadRequest(prefix + key, "required, a non-empty string")
    params = item.get("params", {})
    if not isinstance(params, dict):
        raise BadRequest(prefix + "params", "must be an object")
    timeout = item.get("timeout")
    if timeout is not None:
        try:
            timeout = check_timeout(timeout)
        except InvalidInput as exc:
            raise BadRequest(prefix + "timeout", exc.message) from None
    return JobSpec(
        kind=item["kind"],
        target=item["target"],
        domain=item["domain"],
        params=params,
        priority=_priority(item.get("priority", 0), prefix + "priority"),
        source=_str(item.get("source"), prefix + "source") or "api",
        source_id=_str(item.get("source_id"), prefix + "source_id"),
        dedupe_key=_str(item.get("dedupe_key"), prefix + "dedupe_key"),
        retry_preset=_str(item.get("retry_preset"), prefix + "retry_preset"),
        timeout=timeout,
    )


def _states(raw: str | None) -> list[str]:
    valid = {"queued", "running", "waiting", "paused", "done", "failed", "cancelled"}
    states = [s.strip() for s in (raw or "").split(",") if s.strip()]
    for state in states:
        if state not in valid:
            raise BadRequest("state", f"unknown state {state!r}")
    return states


def _query_int(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(name, f"must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(name, f"must be between {lo} and {hi}")
    return value


async def _json_body() -> Any:
    return await read_json()


def make_blueprint(engine: Engine) -> Blueprint:
    """The job API routes bound to ``engine``."""
    bp = Blueprint("engine", __name__)

    @bp.errorhandler(InvalidInput)
    async def bad_request(exc: InvalidInput) -> tuple[dict[str, Any], int]:
        return _error(400, exc, exc.field)

    @bp.errorhandler(MalformedBody)
    async def bad_body(exc: MalformedBody) -> tuple[dict[str, Any], int]:
        return _error(400, exc, exc.field)

    @bp.errorhandler(JobNotFound)
    async def not_found(exc: JobNotFound) -> tuple[dict[str, Any], int]:
        return _error(404, exc, "id")

    @bp.errorhandler(JobConflict)
    async def conflict(exc: JobConflict) -> tuple[dict[str, Any], int]:
        return _error(409, exc, "state")

    @bp.post("/api/v1/jobs")
    async def add_jobs() -> tuple[dict[str, Any], int]:
        body = await _json_body()
        if isinstance(body, dict) and "jobs" in body:
            items = body["jobs"]
            if not isinstance(items, list):
                raise BadRequest("jobs", "must be a list")
            batch = True
        elif isinstance(body, list):
            items, batch = body, True
        else:
            items, batch = [body], False
        if not items:
            raise BadRequest("jobs", "no job given")
        if len(items) > MAX_BATCH:
            raise BadRequest("jobs", f"at most {MAX_BATCH} jobs per request")
        specs = [parse_job(item, f"jobs[{i}]." if batch else "") for i, item in enumerate(items)]
        try:
            submitted = await engine.submit_many(specs)
        except InvalidInput as exc:
            field = exc.field
            if batch:
                # submit_many prefixes "[i]." only when there are several jobs
                field = "jobs" + field if field.startswith("[") else "jobs[0]." + field
            raise BadRequest(field, exc.message) from None
        out = [{"job": job_to_json(s.job), "created": s.created} for s in submitted]
        if batch:
            return {"jobs": out}, 201
        return out[0], 201

    @bp.get("/api/v1/jobs")
    async def list_jobs() -> dict[str, Any]:
        limit = _query_int("limit", 100, 1, MAX_PAGE)
        offset = _query_int("offset", 0, 0, 10**12)
        jobs, total = await engine.list_jobs(
            states=_states(request.args.get("state")),
            kind=request.args.get("kind") or None,
            domain=(request.args.get("domain") or "").lower() or None,
            limit=limit,
            offset=offset,
        )
        return {
            "jobs": [job_to_json(j) for j in jobs],
            "total": total,
            "limit": limit,
            "offset": offset,
            "queue_paused": sorted(engine.queue_paused),
        }

    @bp.delete("/api/v1/jobs")
    async def clear_history() -> dict[str, Any]:
        states = _states(request.args.get("state")) or ["done"]
        for state in states:
            if state not in ("done", "failed", "cancelled"):
                raise BadRequest("state", "only done, failed or cancelled jobs can be cleared")
        return {"removed": await engine.clear_history(states), "states": states}

    @bp.get("/api/v1/jobs/<job_id>")
    async def get_job(job_id: str) -> dict[str, Any]:
        job = await engine.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        return job_to_json(job)

    @bp.post("/api/v1/jobs/<job_id>/pause")
    async def pause_job(job_id: str) -> dict[str, Any]:
        return job_to_json(await engine.pause_job(job_id))

    @bp.post("/api/v1/jobs/<job_id>/resume")
    async def resume_job(job_id: str) -> dict[str, Any]:
        return job_to_json(await engine.resume_job(job_id))

    @bp.post("/api/v1/jobs/<job_id>/retry")
    async def retry_job(job_id: str) -> dict[str, Any]:
        return job_to_json(await engine.retry_job(job_id))

    @bp.post("/api/v1/jobs/<job_id>/move")
    async def move_job(job_id: str) -> dict[str, Any]:
        body = await _json_body()
        if not isinstance(body, dict):
            raise BadRequest("body", "must be a JSON object")
        unknown = set(body) - {"position", "how", "priority"}
        if unknown:
            raise BadRequest(sorted(unknown)[0], "unknown key")
        # how, position and priority are checked by the engine (InvalidInput → 400)
        return await engine.move_job(
            job_id,
            position=body.get("position"),
            how=body.get("how", "set"),
            priority=body.get("priority"),
        )

    @bp.delete("/api/v1/jobs/<job_id>")
    async def remove_job(job_id: str) -> dict[str, Any]:
        return await engine.remove_job(job_id)

    @bp.get("/api/v1/queue")
    async def queue_status() -> dict[str, Any]:
        stats: dict[str, Any] = to_plain(engine.statistics())
        return {"paused": sorted(engine.queue_paused), "statistics": stats}

    @bp.post("/api/v1/queue/pause")
    async def pause_queue() -> dict[str, Any]:
        await engine.pause_queue()
        return {"paused": sorted(engine.queue_paused)}

    @bp.post("/api/v1/queue/resume")
    async def resume_queue() -> dict[str, Any]:
        await engine.resume_queue()
        return {"paused": sorted(engine.queue_paused)}

    @bp.post("/api/v1/queue/reorder")
    async def reorder_queue() -> dict[str, Any]:
        """``{"item_ids": [id, ...]}``: the given pending jobs take the places they hold
        between them, in the given order (the web queue page's drag and drop). Replies
        ``{"item_ids": [...]}``, the pending jobs' ids in queue order afterwards."""
        body = await _json_body()
        if not isinstance(body, dict) or set(body) != {"item_ids"}:
            raise BadRequest("item_ids", 'the body must be {"item_ids": [...]}')
        ids = body["item_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise BadRequest("item_ids", "must be a list of job ids")
        if len(set(ids)) != len(ids):
            raise BadRequest("item_ids", "a job id is given twice")
        order = await _pending_ids(engine)
        missing = [i for i in ids if i not in order]
        if missing:
            raise JobConflict(f"job {missing[0]} is not pending; only pending jobs can be moved")
        slots = sorted(order.index(i) for i in ids)
        for job_id, slot in zip(ids, slots, strict=True):
            await engine.move_job(job_id, how="set", position=slot)
        return {"item_ids": await _pending_ids(engine)}

    return bp


async def _pending_ids(engine: Engine) -> list[str]:
    """Ids of the queued, waiting and paused jobs in queue order."""
    jobs, _total = await engine.list_jobs(
        states=["queued", "waiting", "paused"], limit=MAX_BATCH, offset=0
    )
    return [j.id for j in jobs]
