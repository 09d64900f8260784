"""Notifications through Apprise (https://github.com/caronc/apprise), off the event loop.

:meth:`Notifier.notify` is synchronous and never blocks: it puts the message on a bounded
memory channel and returns (a full channel drops the message and counts it).
:meth:`Notifier.serve` is a supervised service that takes messages one by one and sends each
with ``apprise.Apprise.notify`` in a worker thread, bounded by ``timeout`` seconds and tried
again ``retries`` times. So a slow or dead notification target never holds up a job.

URLs are Apprise's (``json://host:port/path``, ``pbul://key``, ``mailto://…``,
``tgram://…``); an empty list makes every call a no-op. Messages follow AutomatedFanfic's
wording (``root/app/notifications``): title "New Fanfiction Download", body the story.
"""

from __future__ import annotations

import logging

import attrs
import trio

from hathd.fanfic.config import NotifyConfig

log = logging.getLogger(__name__)


@attrs.frozen
class Notification:
    """One message: ``title``, ``body`` and Apprise's ``notify_type`` (``info``, ``success``,
    ``warning``, ``failure``)."""

    title: str
    body: str
    notify_type: str = "info"


@attrs.define
class NotifierStatistics:
    """Counters: queued, sent, failed (after all tries), dropped (queue full), pending now."""

    queued: int = 0
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    pending: int = 0


def _send_blocking(urls: list[str], note: Notification) -> bool:
    import apprise

    apobj = apprise.Apprise()
    for url in urls:
        if not apobj.add(url):
            log.warning("apprise refused a notification URL (scheme %s)", url.split(":", 1)[0])
    if len(apobj) == 0:
        return False
    ok = apobj.notify(body=note.body, title=note.title, notify_type=note.notify_type)
    return bool(ok)


class Notifier:
    """Queues notifications and sends them from :meth:`serve` (see module docstring)."""

    def __init__(self, config: NotifyConfig) -> None:
        self.config = config
        self._send, self._recv = trio.open_memory_channel[Notification](config.queue)
        self.stats = NotifierStatistics()

    @property
    def enabled(self) -> bool:
        """Whether any URL is configured."""
        return bool(self.config.urls)

    def notify(self, title: str, body: str, *, notify_type: str = "info") -> bool:
        """Queue a notification; returns ``False`` if nothing is configured or it was dropped.

        Never blocks and never raises.
        """
        if not self.enabled:
            return False
        try:
            self._send.send_nowait(Notification(title, body, notify_type))
        except trio.WouldBlock:
            self.stats.dropped += 1
            log.warning("notification queue full; dropped %r", title)
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.stats.dropped += 1
            return False
        self.stats.queued += 1
        return True

    async def _deliver(self, note: Notification) -> bool:
        cfg = self.config
        for attempt in range(cfg.retries + 1):
            if attempt:
                await trio.sleep(cfg.retry_wait * attempt)
            with trio.move_on_after(cfg.timeout):
                try:
                    ok = await trio.to_thread.run_sync(
                        _send_blocking, list(cfg.urls), note, abandon_on_cancel=True
                    )
                except Exception as exc:
                    log.warning("notification %r failed: %s", note.title, exc)
                    ok = False
                if ok:
                    return True
        return False

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send queued notifications until cancelled (a supervised service)."""
        task_status.started()
        while True:
            note = await self._recv.receive()
            if await self._deliver(note):
                self.stats.sent += 1
            else:
                self.stats.failed += 1
                log.warning("notification %r not delivered", note.title)

    def statistics(self) -> NotifierStatistics:
        """A copy of the counters (``pending``: messages waiting now)."""
        return attrs.evolve(self.stats, pending=self._send.statistics().current_buffer_used)
