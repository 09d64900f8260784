"""Admin API routes of the uploader (a quart Blueprint, mounted with no prefix).

- ``POST /api/v1/uploads`` — body ``{"paths": [abs path, …], "service": id,
  "gallery": name?, "priority": int?}``; ``202`` with ``{"batch", "service", "jobs":
  [{"index", "path", "job", "created"}], "gallery", "skipped": [{"path", "reason"}]}``
  (``skipped``: entries of the given folders left out: symbolic links, names that are not
  valid UTF-8); ``400`` for bad input (a path named directly that is not valid UTF-8
  included), ``502`` when the gallery could not be created; errors as ``{"error": message}``.
- ``GET /api/v1/uploads`` — the newest batches (``?limit=``, default 20).
- ``GET /api/v1/uploads/<batch>`` — the batch summary with per-file state and links and
  ``output`` in every format; ``404`` for an unknown batch.
- ``GET /api/v1/recipes`` — the enabled recipes: id, name, description, credentials (names,
  and whether each is configured), limits, gallery support, extensions.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request

from hathd.admin.body import read_object
from hathd.recipes.uploader import Uploader
from hathd.recipes.uploads import UploadRequestError, Uploads


def _error(message: str, status: int) -> tuple[dict[str, Any], int]:
    return {"error": message}, status


def recipe_listing(uploader: Uploader) -> list[dict[str, Any]]:
    """The enabled recipes as the API lists them (no credential values)."""
    out = []
    for rid, recipe in sorted(uploader.recipes.items()):
        settings = uploader.config.services.get(rid)
        configured = settings.credentials if settings is not None else {}
        out.append(
            {
                "id": rid,
                "name": recipe.name or rid,
                "description": recipe.description,
                "base_url": recipe.base_url,
                "credentials": [
                    {
                        "name": c.name,
                        "required": c.required,
                        "configured": bool(configured.get(c.name)),
                    }
                    for c in recipe.credentials
                ],
                "limits": {
                    "rate": recipe.limits.rate,
                    "burst": recipe.limits.burst,
                    "concurrency": recipe.limits.concurrency,
                },
                "gallery": recipe.gallery is not None,
                "extensions": list(recipe.extensions),
                "max_file_size": recipe.max_file_size,
            }
        )
    return out


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
        try:
            submission = await uploads.submit(paths, service, gallery=gallery, priority=priority)
        except UploadRequestError as exc:
            return _error(str(exc), exc.status)
        return submission.to_json(), 202

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
