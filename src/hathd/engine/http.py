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

Errors: ``400`` (bad input), ``404`` (no such job), ``409`` (the job's state forbids the
operation), each ``{"error": "...", "field": "..."}`` (``field`` names the offending input when
there is one).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request

from hathd.engine.api import JobSpec
from hathd.engine.core import Engine, JobConflict, JobNotFound
from hathd.engine.download import download_spec
from hathd.engine.jobstore import job_to_json
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


class BadRequest(ValueError):
    """Invalid input; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _error(status: int, message: str, field: str | None = None) -> tuple[dict[str, Any], int]:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return body, status


def _from_value_error(exc: ValueError) -> tuple[dict[str, Any], int]:
    if isinstance(exc, BadRequest):
        return _error(400, str(exc), exc.field)
    text = str(exc)
    head, sep, _rest = text.partition(":")
    field = head.strip() if sep and " " not in head.strip() else None
    return _error(400, text, field)


def _int(value: Any, field: str, *, optional: bool = True) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(field, f"must be an integer, got {value!r}")
    return value


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
                priority=_int(item.get("priority", 0), prefix + "priority") or 0,
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
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise BadRequest(prefix + "timeout", "must be a number of seconds > 0")
    return JobSpec(
        kind=item["kind"],
        target=item["target"],
        domain=item["domain"],
        params=params,
        priority=_int(item.get("priority", 0), prefix + "priority") or 0,
        source=_str(item.get("source"), prefix + "source") or "api",
        source_id=_str(item.get("source_id"), prefix + "source_id"),
        dedupe_key=_str(item.get("dedupe_key"), prefix + "dedupe_key"),
        retry_preset=_str(item.get("retry_preset"), prefix + "retry_preset"),
        timeout=float(timeout) if timeout is not None else None,
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


async def _json_body(*, required: bool = True) -> Any:
    body = await request.get_json(force=True, silent=True)
    if body is None and required:
        data = await request.get_data()
        if data:
            raise BadRequest("body", "not valid JSON")
        raise BadRequest("body", "a JSON body is required")
    return body


def make_blueprint(engine: Engine) -> Blueprint:
    """The job API routes bound to ``engine``."""
    bp = Blueprint("engine", __name__)

    @bp.errorhandler(ValueError)
    async def bad_request(exc: ValueError) -> tuple[dict[str, Any], int]:
        return _from_value_error(exc)

    @bp.errorhandler(JobNotFound)
    async def not_found(exc: JobNotFound) -> tuple[dict[str, Any], int]:
        return _error(404, str(exc), "id")

    @bp.errorhandler(JobConflict)
    async def conflict(exc: JobConflict) -> tuple[dict[str, Any], int]:
        return _error(409, str(exc), "state")

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
        except ValueError as exc:
            raise BadRequest(*_split_field(str(exc), batch)) from None
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
        how = body.get("how", "set")
        if how not in ("set", "cur", "end"):
            raise BadRequest("how", "must be one of set, cur, end")
        position = _int(body.get("position"), "position")
        priority = _int(body.get("priority"), "priority")
        if position is None and priority is None and how != "end":
            raise BadRequest("position", "required unless how is 'end' or priority is given")
        if how == "set" and position is not None and position < 0:
            raise BadRequest("position", "must be >= 0 with how=set")
        return await engine.move_job(job_id, position=position, how=how, priority=priority)

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

    return bp


def _split_field(text: str, batch: bool) -> tuple[str, str]:
    head, sep, rest = text.partition(":")
    if not sep or " " in head.strip():
        return "jobs" if batch else "body", text
    field = head.strip()
    if batch and field.startswith("["):
        field = "jobs" + field
    return field, rest.strip()
