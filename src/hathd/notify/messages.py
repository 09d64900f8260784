"""Which bus events become notifications, and their wording (sans-IO).

:func:`message_for` maps one :class:`hathd.events.Event` to ``(kind, Notification)`` or
``None``. The events (docs/architecture.md, "Events"):

- room ``jobs``, type ``done`` / ``failed`` — the full job (:func:`hathd.engine.jobstore.
  job_to_json`); ``failed`` is published only once a job failed for good (a try that will be
  retried makes it ``waiting``) → ``job_done`` / ``job_failed``, filtered by job kind.
- room ``anime``, type ``watchlist-queued`` — ``{"series", "jobs": [{"season", "episode",
  "job"}]}``, the new episodes the watchlist check queued → ``episode_queued``.
- room ``hath``, types ``refused``, ``terminated``, ``stopped`` (the node is off) and
  ``warning`` (the server answered a start or keep-alive call with an error) →
  ``hath_node``.
"""

from __future__ import annotations

from typing import Any

from hathd.events import Event
from hathd.notify.config import JobRoute, NotifyConfig
from hathd.notify.sender import Notification

ROOMS = ("jobs", "anime", "hath")
"""Rooms the notification service subscribes to."""

HATH_OFF = {"refused": "refused", "terminated": "terminated", "stopped": "stopped"}


def _job_wanted(route: JobRoute, kind: str) -> bool:
    if kind in route.skip_kinds:
        return False
    return not route.kinds or kind in route.kinds


def _where(result: Any) -> str | None:
    if not isinstance(result, dict):
        return None
    for key in ("path", "dest", "file", "url"):
        value = result.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _episodes(jobs: Any) -> list[str]:
    out: list[str] = []
    for item in jobs if isinstance(jobs, list) else []:
        if isinstance(item, dict) and item.get("job") and item.get("created", True):
            try:
                out.append(f"S{int(item['season']):02d}E{int(item['episode']):02d}")
            except (KeyError, TypeError, ValueError):
                continue
    return out


def message_for(event: Event, config: NotifyConfig) -> tuple[str, Notification] | None:
    """The notification ``event`` causes under ``config``, as ``(kind, note)``; ``None`` when
    it causes none (not a notified event, or a job kind the route leaves out)."""
    data = event.data
    if event.room == "jobs" and event.type in ("done", "failed"):
        job_kind = str(data.get("kind", ""))
        target = str(data.get("target", ""))
        if event.type == "done":
            if not _job_wanted(config.job_done, job_kind):
                return None
            where = _where(data.get("result"))
            body = target if where is None or where == target else f"{target}\n→ {where}"
            return "job_done", Notification(f"Job done: {job_kind}", body, "success")
        if not _job_wanted(config.job_failed, job_kind):
            return None
        error = data.get("error") or "no error recorded"
        attempts = data.get("attempts", 0)
        body = f"{target}\n{error}\n(after {attempts} tries)"
        return "job_failed", Notification(f"Job failed: {job_kind}", body, "failure")
    if event.room == "anime" and event.type == "watchlist-queued":
        episodes = _episodes(data.get("jobs"))
        if not episodes:
            return None
        series = str(data.get("series", "?"))
        title = (
            f"New episode queued: {series}"
            if len(episodes) == 1
            else (f"{len(episodes)} new episodes queued: {series}")
        )
        return "episode_queued", Notification(title, ", ".join(episodes), "info")
    if event.room == "hath":
        if event.type in HATH_OFF:
            reason = data.get("reason") or data.get("status") or ""
            body = f"The H@H node {HATH_OFF[event.type]}." + (f" {reason}" if reason else "")
            kind_ = "failure" if event.type != "stopped" else "warning"
            return "hath_node", Notification(f"H@H node {event.type}", body, kind_)
        if event.type == "warning":
            message = str(data.get("message") or data.get("status") or "a warning")
            return "hath_node", Notification("H@H node warning", message, "warning")
    return None
