"""Notifications through Apprise (https://github.com/caronc/apprise), off the event loop.

:meth:`Notifier.notify` is synchronous and never blocks: it puts the message, tagged with its
event kind (:data:`hathd.notify.config.EVENT_KINDS`), on a bounded memory channel and
returns (a full channel drops the message and counts it). :meth:`Notifier.serve` is a
supervised service that takes messages one by one and sends each to the URLs of its kind with
``apprise.Apprise.notify`` in a worker thread, bounded by ``timeout`` seconds and tried again
``retries`` times. So a slow or dead notification target never holds up a job.

Quiet hours: a message whose kind is inside its quiet-hours window is *held* and sent when
the window ends, not dropped. The events notified (a job failed for good, the H@H node
stopped, a disk nearly full) still need acting on in the morning, and a held message costs
only memory: held and pending messages together are bounded by ``queue``; past it the oldest
held message is dropped and counted.

URLs are Apprise's (``json://host:port/path``, ``pbul://key``, ``mailto://…``,
``tgram://…``); a kind with no URL makes its calls a no-op. Fanfiction messages follow
AutomatedFanfic's wording (``root/app/notifications``): title "New Fanfiction Download",
body the story.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import attrs
import trio

from hathd.notify.config import EVENT_KINDS, NotifyConfig
from hathd.notify.quiet import QuietHours

log = logging.getLogger(__name__)

RECHECK = 30.0
"""Longest sleep in seconds of :meth:`Notifier.serve` between looks at held messages."""


@attrs.frozen
class Notification:
    """One message: ``title``, ``body`` and Apprise's ``notify_type`` (``info``, ``success``,
    ``warning``, ``failure``)."""

    title: str
    body: str
    notify_type: str = "info"


@attrs.frozen
class Outgoing:
    """A queued message with its event ``kind``."""

    kind: str
    note: Notification


@attrs.define
class NotifierStatistics:
    """Counters: queued, sent, failed (after all tries), dropped (queue full), held (waiting
    for the end of quiet hours now), pending (queued now), and the last send error."""

    queued: int = 0
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    held: int = 0
    pending: int = 0
    last_error: str | None = None


def send_blocking(urls: list[str], note: Notification) -> bool:
    """Send ``note`` to ``urls`` with Apprise now (blocking: run it in a worker thread);
    ``True`` when Apprise reports it delivered. A URL Apprise refuses is logged by scheme only
    (URLs carry tokens)."""
    import apprise

    apobj = apprise.Apprise()
    for url in urls:
        if not apobj.add(url):
            log.warning("apprise refused a notification URL (scheme %s)", url.split(":", 1)[0])
    if len(apobj) == 0:
        return False
    ok = apobj.notify(body=note.body, title=note.title, notify_type=note.notify_type)
    return bool(ok)


def local_now() -> datetime:
    """The local wall-clock time (aware)."""
    return datetime.now().astimezone()


class Notifier:
    """Queues notifications and sends them from :meth:`serve` (see module docstring).

    ``now`` gives the local time quiet hours are judged by; ``recheck`` is the longest sleep
    in seconds between looks at held messages (tests shorten both).
    """

    def __init__(
        self,
        config: NotifyConfig,
        *,
        now: Callable[[], datetime] = local_now,
        recheck: float = RECHECK,
    ) -> None:
        self.config = config
        self._now = now
        self._recheck = recheck
        self._send, self._recv = trio.open_memory_channel[Outgoing](config.queue)
        self._held: list[tuple[datetime, Outgoing]] = []
        self.stats = NotifierStatistics()

    @property
    def enabled(self) -> bool:
        """Whether any event kind has a URL."""
        return self.config.any_urls()

    def wants(self, kind: str) -> bool:
        """Whether event ``kind`` has a URL (so a message of it would be sent)."""
        return bool(self.config.route(kind)[0])

    def notify(
        self, title: str, body: str, *, notify_type: str = "info", kind: str = "fanfic"
    ) -> bool:
        """Queue a notification of event ``kind``; returns ``False`` if the kind has no URL or
        the message was dropped. Never blocks and never raises (an unknown ``kind`` is
        logged and dropped)."""
        if kind not in EVENT_KINDS:
            log.error("notification of unknown kind %r dropped", kind)
            return False
        if not self.wants(kind):
            return False
        try:
            self._send.send_nowait(Outgoing(kind, Notification(title, body, notify_type)))
        except trio.WouldBlock:
            self.stats.dropped += 1
            log.warning("notification queue full; dropped %r", title)
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.stats.dropped += 1
            return False
        self.stats.queued += 1
        return True

    async def _deliver(self, item: Outgoing) -> bool:
        cfg = self.config
        urls = cfg.route(item.kind)[0]
        if not urls:
            return False
        note = item.note
        for attempt in range(cfg.retries + 1):
            if attempt:
                await trio.sleep(cfg.retry_wait * attempt)
            with trio.move_on_after(cfg.timeout):
                try:
                    ok = await trio.to_thread.run_sync(
                        send_blocking, urls, note, abandon_on_cancel=True
                    )
                except Exception as exc:
                    log.warning("notification %r failed: %s", note.title, exc)
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    ok = False
                if ok:
                    return True
        return False

    async def _send_one(self, item: Outgoing) -> None:
        if await self._deliver(item):
            self.stats.sent += 1
        else:
            self.stats.failed += 1
            if self.stats.last_error is None:
                self.stats.last_error = f"{item.note.title!r} not delivered"
            log.warning("notification %r not delivered", item.note.title)

    def _quiet_until(self, kind: str, now: datetime) -> datetime | None:
        try:
            window = QuietHours.parse(self.config.route(kind)[1])
        except ValueError:
            return None
        if window is None or not window.contains(now):
            return None
        return window.ends_after(now)

    def _hold(self, until: datetime, item: Outgoing) -> None:
        if len(self._held) >= self.config.queue:
            dropped = self._held.pop(0)
            self.stats.dropped += 1
            log.warning("too many held notifications; dropped %r", dropped[1].note.title)
        self._held.append((until, item))

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send queued notifications until cancelled (a supervised service); messages in
        quiet hours wait for the end of their window."""
        task_status.started()
        while True:
            now = self._now()
            due = [item for until, item in self._held if until <= now]
            self._held = [(u, i) for u, i in self._held if u > now]
            for item in due:
                await self._send_one(item)
            wait = self._recheck
            if self._held:
                soonest = min(u for u, _ in self._held)
                wait = max(0.0, min(wait, (soonest - self._now()).total_seconds()))
            got: Outgoing | None = None
            with trio.move_on_after(wait if self._held else float("inf")):
                got = await self._recv.receive()
            if got is None:
                continue
            item = got
            until = self._quiet_until(item.kind, self._now())
            if until is not None:
                self._hold(until, item)
                continue
            await self._send_one(item)

    def statistics(self) -> NotifierStatistics:
        """A copy of the counters (``pending``: messages waiting now)."""
        return attrs.evolve(
            self.stats,
            pending=self._send.statistics().current_buffer_used,
            held=len(self._held),
        )
