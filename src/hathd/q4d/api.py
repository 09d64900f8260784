"""Admin API routes of the q4d subsystem.

- ``GET /api/v1/q4d/status``: the ingest counters (:class:`~hathd.q4d.ingest.Q4DStatistics`)
  plus ``labels_pending`` (labels not yet acknowledged by the broker).
- ``GET /api/v1/q4d/rejected?limit=N``: the last rejected ``Down`` payloads, newest first
  (``payload`` decoded as UTF-8 with replacement characters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import attrs

from hathd.runtime import Runtime

if TYPE_CHECKING:
    from quart import Blueprint

    from hathd.q4d.ingest import Q4DIngest
    from hathd.q4d.labels import LabelOutbox


class Q4DParts(Protocol):
    """What the routes read: the label outbox and the current ingest service (if any)."""

    @property
    def outbox(self) -> LabelOutbox: ...

    @property
    def ingest(self) -> Q4DIngest | None: ...


def make_blueprint(rt: Runtime, parts: Q4DParts) -> Blueprint:
    """The q4d routes on ``rt`` reading ``parts`` (the plugin's state after ``setup``)."""
    from quart import Blueprint, request

    bp = Blueprint("q4d", __name__)

    def state() -> Q4DParts:
        return parts

    @bp.get("/api/v1/q4d/status")
    async def q4d_status() -> Any:
        st = state()
        body: dict[str, Any] = {"connected": False}
        if st.ingest is not None:
            body = attrs.asdict(st.ingest.statistics())
        body["labels_pending"] = await st.outbox.count()
        return body

    @bp.get("/api/v1/q4d/rejected")
    async def q4d_rejected() -> Any:
        try:
            limit = max(1, min(1000, int(request.args.get("limit", "20"))))
        except ValueError:
            return {"error": "limit must be a number"}, 400
        rows = await rt.store.query(
            "SELECT received_at, reason, detail, payload FROM q4d_rejected "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return {
            "rejected": [
                {
                    "received_at": r["received_at"],
                    "reason": r["reason"],
                    "detail": r["detail"],
                    "payload": bytes(r["payload"]).decode("utf-8", "replace"),
                }
                for r in rows
            ]
        }

    return bp
