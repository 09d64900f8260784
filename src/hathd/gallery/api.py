"""Admin routes of the gallery downloader.

- ``POST /api/v1/hath/download`` — start the downloader if it is idle (as the servercmd
  ``start_downloader`` does). Reply ``202 {"started": bool, "statistics": {…}}``; ``started``
  is false when a run was already going.
- ``GET /api/v1/hath/download`` — ``200 {"statistics": {…}}`` (see
  :class:`~hathd.gallery.downloader.DownloaderStatistics`).
"""

from __future__ import annotations

from typing import Any

import attrs
from quart import Blueprint

from hathd.gallery.downloader import Downloader


def make_blueprint(downloader: Downloader) -> Blueprint:
    """The ``gallery`` blueprint bound to ``downloader`` (full paths, no prefix)."""
    bp = Blueprint("gallery", __name__)

    @bp.post("/api/v1/hath/download")
    async def start() -> tuple[dict[str, Any], int]:
        started = downloader.trigger()
        return {"started": started, "statistics": attrs.asdict(downloader.statistics())}, 202

    @bp.get("/api/v1/hath/download")
    async def show() -> dict[str, Any]:
        return {"statistics": attrs.asdict(downloader.statistics())}

    return bp
