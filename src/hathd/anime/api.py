"""Admin API routes of the anime library (a quart Blueprint).

- ``GET /api/v1/anime`` — every series with ``missing`` and ``present`` episode counts.
- ``POST /api/v1/anime/search`` — ``{"text", "site"?}`` → ``{"results": [{"site", "key",
  "name", "url", "description"}]}``.
- ``POST /api/v1/anime`` — add/refresh a series: ``{"ref": URL or key, "site"?,
  "seasons"?: [int], "episodes"?: "1-12", "languages"?: [...], "queue"?: bool (default
  true), "follow"?: bool}`` → ``{"series", "jobs"}``.
- ``GET /api/v1/anime/<key>`` — detail with episodes (and the job filling each).
- ``GET /api/v1/anime/missing`` (``?key=``) — missing episodes.
- ``POST /api/v1/anime/<key>/queue`` — ``{"seasons"?, "episodes"?, "languages"?,
  "priority"?}`` → ``{"jobs"}``.
- ``POST /api/v1/anime/<key>/follow`` — ``{"follow": bool}`` (default true).
- ``POST /api/v1/anime/rescan`` — ``{"check": bool}``: scan the folder (``false``, default),
  or trigger the watchlist check (scan + followed series) in the background (``true``, 202).
- ``GET``/``PUT /api/v1/anime/scheduler`` — ``{"interval", "at", "last_run", "next_run"}``;
  ``PUT {"interval"?: seconds, "at"?: "HH:MM" | null}``.
- ``GET /covers/<key>`` — the series' cover image, fetched from its provider once and kept in
  the state directory (:mod:`hathd.anime.covers`); a series without a usable cover (or an
  unknown key) gets a placeholder SVG with ``X-Hathd-Cover: placeholder``, never an error.

Errors are ``{"error": message}``: ``400`` bad input, ``404`` unknown series, ``502`` a provider
request failed or its page changed (the message names the field).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import attrs
from quart import Blueprint, Response, request

from hathd.anime.config import LANGUAGES
from hathd.anime.covers import PLACEHOLDER_SVG
from hathd.anime.library import LibraryError, parse_range
from hathd.anime.providers.base import ProviderError
from hathd.anime.watchlist import Schedule

if TYPE_CHECKING:
    from hathd.anime.plugin import AnimeService

Reply = tuple[dict[str, Any], int]


def _error(message: str, status: int) -> Reply:
    return {"error": message}, status


async def _body() -> dict[str, Any] | None:
    body = await request.get_json(force=True, silent=True)
    if body is None and not await request.get_data():
        return {}
    return body if isinstance(body, dict) else None


def _ints(value: Any, field: str) -> set[int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10_000 for v in value
    ):
        raise LibraryError(f"{field}: expected a list of integers >= 0")
    return set(value)


def _langs(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or any(v not in LANGUAGES for v in value):
        raise LibraryError(f"languages: expected a list of {', '.join(LANGUAGES)}")
    return list(value)


def create_blueprint(service: AnimeService) -> Blueprint:
    """The anime routes over ``service``."""
    bp = Blueprint("anime", __name__)
    lib = service.library

    def guard(fn: Any) -> Any:
        async def wrapped(*args: Any, **kwargs: Any) -> Reply:
            try:
                result: Reply = await fn(*args, **kwargs)
                return result
            except LibraryError as exc:
                return _error(str(exc), 400)
            except ProviderError as exc:
                return _error(str(exc), 502)

        wrapped.__name__ = fn.__name__
        return wrapped

    @bp.get("/api/v1/anime")
    @guard
    async def listing() -> Reply:
        missing = await lib.db.missing_counts()
        present = await lib.db.store.query(
            "SELECT series_key, count(*) AS n FROM anime_episodes WHERE file_path IS NOT NULL"
            " GROUP BY series_key"
        )
        have = {r["series_key"]: r["n"] for r in present}
        series = [
            {**attrs.asdict(s), "missing": missing.get(s.key, 0), "present": have.get(s.key, 0)}
            for s in await lib.db.all_series()
        ]
        return {"series": series}, 200

    @bp.post("/api/v1/anime/search")
    @guard
    async def search() -> Reply:
        body = await _body()
        if body is None or not isinstance(body.get("text"), str):
            return _error("text: expected a string", 400)
        site = body.get("site")
        if site is not None and not isinstance(site, str):
            return _error("site: expected a string", 400)
        hits = await lib.search(body["text"], site)
        return {"results": [attrs.asdict(h) for h in hits]}, 200

    @bp.post("/api/v1/anime")
    @guard
    async def add() -> Reply:
        body = await _body()
        if body is None or not isinstance(body.get("ref"), str):
            return _error("ref: expected a series URL or key", 400)
        site = body.get("site")
        if site is not None and not isinstance(site, str):
            return _error("site: expected a string", 400)
        seasons = _ints(body.get("seasons"), "seasons")
        episodes_text = body.get("episodes")
        if episodes_text is not None and not isinstance(episodes_text, str):
            return _error("episodes: expected text like 1-12", 400)
        episodes = parse_range(episodes_text)
        languages = _langs(body.get("languages"))
        series = await lib.refresh(body["ref"], site=site, seasons=seasons)
        if body.get("follow") is True:
            await lib.db.set_followed(series.key, True)
        jobs: list[dict[str, Any]] = []
        if body.get("queue", True) is not False:
            jobs = await lib.queue(
                series.key, seasons=seasons, episodes=episodes, languages=languages
            )
        stored = await lib.db.series(series.key)
        return {"series": attrs.asdict(stored) if stored else None, "jobs": jobs}, 200

    @bp.get("/api/v1/anime/missing")
    @guard
    async def missing() -> Reply:
        key = request.args.get("key") or None
        if key is not None and await lib.db.series(key) is None:
            return _error(f"unknown series {key!r}", 404)
        eps = await lib.db.missing(key)
        return {"missing": [{**attrs.asdict(e), "code": e.code} for e in eps]}, 200

    @bp.get("/api/v1/anime/scheduler")
    @guard
    async def scheduler_get() -> Reply:
        return service.scheduler_state(), 200

    @bp.put("/api/v1/anime/scheduler")
    @guard
    async def scheduler_put() -> Reply:
        body = await _body()
        if body is None:
            return _error("expected a JSON object", 400)
        current = service.scheduler.schedule
        interval = body.get("interval", current.interval)
        at = body.get("at", current.at)
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            return _error("interval: expected seconds", 400)
        if not 0 <= interval <= 30 * 86400:
            return _error("interval: must be between 0 and 2592000 seconds", 400)
        if at is not None and (
            not isinstance(at, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", at)
        ):
            return _error("at: expected HH:MM (24 h) or null", 400)
        await service.set_schedule(Schedule(float(interval), at))
        return service.scheduler_state(), 200

    @bp.post("/api/v1/anime/rescan")
    @guard
    async def rescan() -> Reply:
        body = await _body()
        if body is None:
            return _error("expected a JSON object", 400)
        if body.get("check") is True:
            service.scheduler.trigger()
            return {"triggered": True}, 202
        return await lib.scan(), 200

    @bp.get("/covers/<key>")
    async def cover(key: str) -> Response:
        series = await lib.db.series(key)
        provider = lib.providers.get(series.site) if series else None
        found = None
        if series is not None and provider is not None:
            found = await service.covers.get(key, series.cover_url, provider.domain)
        if found is None:
            return Response(
                PLACEHOLDER_SVG,
                mimetype="image/svg+xml",
                headers={"X-Hathd-Cover": "placeholder"},
            )
        body, mime = found
        return Response(body, mimetype=mime, headers={"X-Hathd-Cover": "provider"})

    @bp.get("/api/v1/anime/<key>")
    @guard
    async def detail(key: str) -> Reply:
        series = await lib.db.series(key)
        if series is None:
            return _error(f"unknown series {key!r}", 404)
        jobs = await lib.db.episode_jobs(key)
        eps = [
            {**attrs.asdict(e), "code": e.code, "job": jobs.get((e.season, e.number))}
            for e in await lib.db.episodes(key)
        ]
        return {"series": attrs.asdict(series), "episodes": eps}, 200

    @bp.post("/api/v1/anime/<key>/queue")
    @guard
    async def queue(key: str) -> Reply:
        body = await _body()
        if body is None:
            return _error("expected a JSON object", 400)
        if await lib.db.series(key) is None:
            return _error(f"unknown series {key!r}", 404)
        priority = body.get("priority")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            return _error("priority: expected an integer", 400)
        episodes_text = body.get("episodes")
        if episodes_text is not None and not isinstance(episodes_text, str):
            return _error("episodes: expected text like 1-12", 400)
        jobs = await lib.queue(
            key,
            seasons=_ints(body.get("seasons"), "seasons"),
            episodes=parse_range(episodes_text),
            languages=_langs(body.get("languages")),
            priority=priority,
        )
        return {"jobs": jobs}, 200

    @bp.post("/api/v1/anime/<key>/follow")
    @guard
    async def follow(key: str) -> Reply:
        body = await _body()
        if body is None:
            return _error("expected a JSON object", 400)
        flag = body.get("follow", True)
        if not isinstance(flag, bool):
            return _error("follow: expected true or false", 400)
        if not await lib.db.set_followed(key, flag):
            return _error(f"unknown series {key!r}", 404)
        return {"series": key, "followed": flag}, 200

    return bp
