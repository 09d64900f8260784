"""Admin API routes of the uploader (a quart Blueprint, mounted with no prefix).

- ``POST /api/v1/uploads`` — body ``{"paths": [abs path, …], "service": id,
  "gallery": name?, "priority": int?, "per_folder": bool?, "post_to": {"forum": id,
  "thread_id": "123"} | {"forum": id, "forum_id": "5", "subject": text}?, "format": name?}``;
  ``202`` with ``{"batch", "service", "jobs": [{"index", "path", "job", "created"}],
  "gallery", "skipped": [{"path", "reason"}], "batches": [the same for every batch],
  "post": post | null}`` (the top-level fields describe the first batch; ``per_folder``
  makes one batch, and gallery, per folder; ``skipped``: entries of the given folders left
  out: symbolic links, names that are not valid UTF-8); ``400`` for bad input (a path named
  directly that is not valid UTF-8 included, an unknown forum or format), ``502`` when a
  gallery could not be created; errors as ``{"error": message}``.
- ``GET /api/v1/posts`` — the newest forum posts (``?limit=``); ``GET /api/v1/posts/<id>`` —
  one post: ``{"id", "forum", "thread_id", "forum_id", "subject", "batches", "format",
  "state", "job", "post_id", "post_url", "error", "created_at", "updated_at"}``.
- ``GET /api/v1/uploads`` — the newest batches (``?limit=``, default 20).
- ``GET /api/v1/uploads/<batch>`` — the batch summary with per-file state and links and
  ``output`` in every format; ``404`` for an unknown batch.
- ``GET /api/v1/recipes`` — the enabled recipes: id, name, description, credentials (names,
  and whether each is configured), limits, gallery support, extensions.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request

from hathd.jsonbody import read_object
from hathd.recipes.config import ServiceConfig
from hathd.recipes.model import Recipe
from hathd.recipes.posts import PostRequestError, PostTarget, get_post, recent_posts
from hathd.recipes.uploader import Uploader
from hathd.recipes.uploads import UploadRequestError, Uploads


def _error(message: str, status: int) -> tuple[dict[str, Any], int]:
    return {"error": message}, status


def _source(configured: dict[str, str], name: str, settings: ServiceConfig | None) -> str | None:
    """Where a credential is to come from: ``config``, ``file``, ``keyring`` (asked for; the
    keyring is read when the session starts) or ``None``."""
    if configured.get(name):
        return "config"
    if configured.get(f"{name}_file"):
        return "file"
    if settings is not None and settings.keyring:
        return "keyring"
    return None


def recipe_listing(uploader: Uploader) -> list[dict[str, Any]]:
    """The enabled recipes as the API lists them (no credential values): the image hosts
    (``"kind": "upload"``), then the forums (``"kind": "forum"``)."""
    out: list[dict[str, Any]] = []
    for rid, recipe in sorted({**uploader.recipes, **uploader.forums}.items()):
        settings = uploader.config.services.get(rid)
        configured = settings.credentials if settings is not None else {}
        host = recipe if isinstance(recipe, Recipe) else None
        out.append(
            {
                "id": rid,
                "kind": "upload" if host is not None else "forum",
                "name": recipe.name or rid,
                "description": recipe.description,
                "base_url": recipe.base_url,
                "credentials": [
                    {
                        "name": c.name,
                        "required": c.required,
                        "configured": _source(configured, c.name, settings) is not None,
                        "source": _source(configured, c.name, settings),
                    }
                    for c in recipe.credentials
                ],
                "limits": {
                    "rate": recipe.limits.rate,
                    "burst": recipe.limits.burst,
                    "concurrency": recipe.limits.concurrency,
                },
                "gallery": host is not None and host.gallery is not None,
                "extensions": list(host.extensions) if host is not None else [],
                "max_file_size": host.max_file_size if host is not None else None,
            }
        )
    return out


def _post_target(value: object) -> PostTarget | None:
    """``post_to`` of an upload request, or ``None``.

    :raises PostRequestError: not an object of strings with a forum and a thread or forum id.
    """
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(value.get(k), str | None) for k in ("forum", "thread_id", "forum_id", "subject")
    ):
        raise PostRequestError("'post_to' must be an object of strings")
    extra = sorted(set(value) - {"forum", "thread_id", "forum_id", "subject"})
    if extra:
        raise PostRequestError(f"'post_to' has unknown key(s): {', '.join(extra)}")
    forum = value.get("forum")
    if not forum:
        raise PostRequestError("'post_to.forum' must name a forum recipe")
    return PostTarget(
        forum, value.get("thread_id"), value.get("forum_id"), value.get("subject")
    ).checked()


def create_blueprint(uploads: Uploads) -> Blueprint:
    """The uploader's routes over ``uploads``."""
    bp = Blueprint("recipes", __name__)

    @bp.post("/api/v1/uploads")
    async def submit() -> tuple[dict[str, Any], int]:
        body = await read_object()
        paths = body.get("paths")
        service = body.get("service")
        gallery = body.get("gallery")
        priority = body.get("priority", 0)
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            return _error("'paths' must be a non-empty list of absolute paths", 400)
        if not isinstance(service, str) or not service:
            return _error("'service' must name a recipe", 400)
        if gallery is not None and not isinstance(gallery, str):
            return _error("'gallery' must be a string", 400)
        if not isinstance(priority, int) or isinstance(priority, bool):
            return _error("'priority' must be an integer", 400)
        per_folder = body.get("per_folder", False)
        fmt = body.get("format", "bbcode")
        if not isinstance(per_folder, bool):
            return _error("'per_folder' must be true or false", 400)
        if not isinstance(fmt, str):
            return _error("'format' must name an output format", 400)
        try:
            post = _post_target(body.get("post_to"))
            subs, created = await uploads.submit_sets(
                paths,
                service,
                per_folder=per_folder,
                gallery=gallery,
                priority=priority,
                post=post,
                fmt=fmt,
            )
        except PostRequestError as exc:
            return _error(str(exc), 400)
        except UploadRequestError as exc:
            return _error(str(exc), exc.status)
        return {
            **subs[0].to_json(),
            "batches": [sub.to_json() for sub in subs],
            "post": None if created is None else created.to_json(),
        }, 202

    @bp.get("/api/v1/posts")
    async def posts_recent() -> tuple[dict[str, Any], int]:
        try:
            limit = max(1, min(1000, int(request.args.get("limit", "20"))))
        except ValueError:
            return _error("'limit' must be an integer", 400)
        return {"posts": [p.to_json() for p in await recent_posts(uploads.store, limit)]}, 200

    @bp.get("/api/v1/posts/<post_id>")
    async def post_show(post_id: str) -> tuple[dict[str, Any], int]:
        post = await get_post(uploads.store, post_id)
        if post is None:
            return _error(f"no forum post {post_id!r}", 404)
        return post.to_json(), 200

    @bp.get("/api/v1/uploads")
    async def recent() -> tuple[dict[str, Any], int]:
        try:
            limit = max(1, min(1000, int(request.args.get("limit", "20"))))
        except ValueError:
            return _error("'limit' must be an integer", 400)
        return {"batches": await uploads.recent(limit)}, 200

    @bp.get("/api/v1/uploads/<batch_id>")
    async def show(batch_id: str) -> tuple[dict[str, Any], int]:
        summary = await uploads.summary(batch_id)
        if summary is None:
            return _error(f"no upload batch {batch_id!r}", 404)
        return summary, 200

    @bp.get("/api/v1/recipes")
    async def recipes() -> tuple[dict[str, Any], int]:
        return {"recipes": recipe_listing(uploads.uploader)}, 200

    return bp
