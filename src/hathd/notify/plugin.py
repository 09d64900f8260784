"""Notifications as a daemon part: one :class:`~hathd.notify.sender.Notifier` for every
pipeline.

- ``setup``: builds the notifier from ``[notify]``.
- ``services``: ``notify`` (the sender), ``notify-events`` (turns bus events into messages,
  :mod:`hathd.notify.messages`) and ``notify-disk`` (when ``[notify.disk_full] urls`` is
  set, :mod:`hathd.notify.disk`).
- admin API: ``POST /api/v1/notify/test`` ``{"kind": "job_done"?}`` (admin scope) sends a
  test message to every configured kind (or to ``kind``) at once, ignoring quiet hours, and
  answers ``{"results": [{"kind", "urls", "ok", "error"?}]}`` (``400`` for an unknown kind);
  ``GET /api/v1/notify/status`` — the counters.
- CLI: ``hathd notify test [--event KIND]``.

Pipelines use the notifier through :attr:`NotifyPlugin.notifier` (fanfiction) or simply publish
their events on the bus; this part decides what becomes a message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from hathd.config import Config
from hathd.notify.config import EVENT_KINDS
from hathd.notify.disk import DiskWatch
from hathd.notify.messages import ROOMS, message_for
from hathd.notify.sender import Notification, Notifier, send_blocking
from hathd.runtime import BasePlugin, Runtime
from hathd.supervisor import ServiceSpec, to_plain

if TYPE_CHECKING:
    import asyncclick as click
    from quart import Blueprint

log = logging.getLogger(__name__)

TEST_TITLE = "hathd test notification"


async def send_test(notifier: Notifier, kind: str | None) -> list[dict[str, Any]]:
    """Send a test message now to the URLs of ``kind`` (``None``: every kind with URLs),
    bypassing the queue and quiet hours; one result per kind tried.

    :raises KeyError: ``kind`` is not an event kind.
    """
    kinds = [kind] if kind is not None else list(EVENT_KINDS)
    results: list[dict[str, Any]] = []
    for name in kinds:
        urls = notifier.config.route(name)[0]
        if not urls:
            if kind is not None:
                results.append({"kind": name, "urls": 0, "ok": False, "error": "no URLs"})
            continue
        note = Notification(TEST_TITLE, f"A test of the {name} notifications.", "info")
        entry: dict[str, Any] = {"kind": name, "urls": len(urls), "ok": False}
        with trio.move_on_after(notifier.config.timeout):
            try:
                entry["ok"] = await trio.to_thread.run_sync(
                    send_blocking, urls, note, abandon_on_cancel=True
                )
            except Exception as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}"
        if not entry["ok"] and "error" not in entry:
            entry["error"] = "not delivered (see the log)"
        results.append(entry)
    return results


class NotifyPlugin(BasePlugin):
    """Wires notifications into the daemon (see module docstring)."""

    name = "notify"

    def __init__(self) -> None:
        self.notifier: Notifier | None = None
        self.disk: DiskWatch | None = None
        self.relayed = 0

    async def setup(self, rt: Runtime) -> None:
        """Build the notifier and, when configured, the disk watch."""
        cfg = rt.config.notify
        self.notifier = Notifier(cfg)
        if cfg.disk_full.urls:
            paths = cfg.disk_full.paths or [str(rt.paths.state_dir)]
            self.disk = DiskWatch(cfg.disk_full, paths, self._disk_warning)

    def _disk_warning(self, title: str, body: str) -> None:
        if self.notifier is not None:
            self.notifier.notify(title, body, notify_type="warning", kind="disk_full")

    def _notifier(self) -> Notifier:
        if self.notifier is None:
            raise RuntimeError("notify plugin used before setup()")
        return self.notifier

    async def relay(
        self, rt: Runtime, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Turn bus events into notifications until cancelled; a lagged subscription (events
        were dropped) subscribes again."""
        notifier = self._notifier()
        started = False
        while True:
            async with rt.bus.subscribe(ROOMS, buffer=1024) as sub:
                if not started:
                    task_status.started()
                    started = True
                async for event in sub:
                    if event.type == "lagged":
                        log.warning("notify: the event bus dropped events; some were missed")
                        continue  # the last event: the iterator ends after it
                    msg = message_for(event, notifier.config)
                    if msg is not None:
                        kind, note = msg
                        if notifier.notify(
                            note.title, note.body, notify_type=note.notify_type, kind=kind
                        ):
                            self.relayed += 1

    def services(self, rt: Runtime) -> Sequence[ServiceSpec]:
        """The sender, the event relay and the disk watch."""
        notifier = self._notifier()
        specs = [
            ServiceSpec("notify", notifier.serve, notifier.statistics),
            ServiceSpec(
                "notify-events",
                partial(self.relay, rt),
                lambda: {"relayed": self.relayed},
            ),
        ]
        if self.disk is not None:
            specs.append(ServiceSpec("notify-disk", self.disk.serve, self.disk.statistics))
        return specs

    def reconfigure(self, rt: Runtime, config: Config) -> None:
        """Use the configuration in force after a reload. Routes are read per message, so
        ``[notify]`` values take effect as soon as :mod:`hathd.reload` lets them (today they
        wait for a restart, like every key outside its live list)."""
        if self.notifier is not None:
            self.notifier.config = config.notify

    def blueprint(self, rt: Runtime) -> Blueprint | None:
        """``POST /api/v1/notify/test`` and ``GET /api/v1/notify/status``."""
        from quart import Blueprint

        from hathd.jsonbody import read_object

        bp = Blueprint("notify", __name__)
        notifier = self._notifier()

        @bp.post("/api/v1/notify/test")
        async def notify_test() -> Any:
            """Send a test message: ``{"kind": "job_done"}`` or ``{}`` for every kind."""
            body = await read_object()
            kind = body.get("kind")
            if kind is not None and kind not in EVENT_KINDS:
                return {
                    "error": f"kind must be one of {', '.join(EVENT_KINDS)}",
                    "code": "invalid_input",
                    "field": "kind",
                }, 400
            return {"results": await send_test(notifier, kind)}

        @bp.get("/api/v1/notify/status")
        async def notify_status() -> Any:
            """Counters of the notifier and the disk watch."""
            out: dict[str, Any] = {"notifier": to_plain(notifier.statistics())}
            out["kinds"] = {k: len(notifier.config.route(k)[0]) for k in EVENT_KINDS}
            if self.disk is not None:
                out["disk"] = self.disk.statistics()
            return out

        return bp

    def cli(self) -> Sequence[click.Command]:
        """``hathd notify test [--event KIND]``."""
        import asyncclick as click

        from hathd.clictx import CliContext

        @click.group("notify")
        async def notify() -> None:
            """Notifications through Apprise."""

        @notify.command("test")
        @click.option(
            "--event",
            "kind",
            type=click.Choice(EVENT_KINDS),
            help="Only this event kind's URLs (default: every kind with URLs).",
        )
        @click.pass_obj
        async def test(obj: CliContext, kind: str | None) -> None:
            """Send a test message now (quiet hours are ignored)."""
            body: dict[str, Any] = {} if kind is None else {"kind": kind}
            async with obj.admin() as admin:
                reply = await admin.post("/api/v1/notify/test", body)
            click.echo(json.dumps(reply, indent=2))
            results = reply.get("results", [])
            if not results or not all(r.get("ok") for r in results):
                raise click.exceptions.Exit(1)

        return [notify]
