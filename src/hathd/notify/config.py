"""``[notify]``: where notifications of each event kind go, and when they wait.

One section for every pipeline. Each event kind has its own list of Apprise URLs and its own
quiet-hours window (``HH:MM-HH:MM``, local time, may span midnight; see
:mod:`hathd.notify.quiet`). Kinds: ``job_done``, ``job_failed`` (failed for good, after the
last retry), ``episode_queued`` (the anime watchlist queued a new episode), ``hath_node``
(the H@H node stopped, was refused or terminated, or warned by the server), ``disk_full``
(a watched folder's file system crossed ``threshold_percent``) and ``fanfic`` (the
fanfiction pipeline's own messages).

The older key ``[notify] urls`` keeps working: it is where fanfiction messages go while
``[notify.fanfic] urls`` is empty.
"""

from __future__ import annotations

from typing import Any

import attrs

from hathd.confutil import FieldError, in_range
from hathd.notify.quiet import check_window

EVENT_KINDS = ("job_done", "job_failed", "episode_queued", "hath_node", "disk_full", "fanfic")
"""The event kinds a route can be configured for (``[notify.<kind>]``)."""


def _window(_inst: Any, attr: attrs.Attribute[Any], value: str) -> None:
    try:
        check_window(value)
    except ValueError as exc:
        raise FieldError(attr.name, str(exc)) from None


@attrs.frozen
class EventRoute:
    """``[notify.<kind>]``: the Apprise URLs of one event kind and its quiet hours."""

    urls: list[str] = attrs.field(factory=list, metadata={"secret": True})
    """Apprise URLs of this event kind (secret: they carry tokens); empty = none."""
    quiet_hours: str = attrs.field(default="", validator=_window)
    """Local-time window ``HH:MM-HH:MM`` (may span midnight, e.g. ``22:00-07:00``) in which
    messages are held and sent when it ends; empty = never quiet."""


@attrs.frozen
class JobRoute:
    """``[notify.job_done]`` / ``[notify.job_failed]``: a route limited to some job kinds."""

    urls: list[str] = attrs.field(factory=list, metadata={"secret": True})
    """Apprise URLs of this event kind (secret: they carry tokens); empty = none."""
    quiet_hours: str = attrs.field(default="", validator=_window)
    """Local-time window ``HH:MM-HH:MM`` (may span midnight) in which messages are held and
    sent when it ends; empty = never quiet."""
    kinds: list[str] = attrs.field(factory=list)
    """Job kinds notified (``anime-episode``, ``transfer``, …); empty = every kind."""
    skip_kinds: list[str] = attrs.field(factory=lambda: ["media-refresh"])
    """Job kinds never notified (by default the media-server refreshes hathd runs itself)."""


@attrs.frozen
class DiskRoute:
    """``[notify.disk_full]``: watched folders and the threshold of their file systems."""

    urls: list[str] = attrs.field(factory=list, metadata={"secret": True})
    """Apprise URLs of this event kind (secret: they carry tokens); empty = none."""
    quiet_hours: str = attrs.field(default="", validator=_window)
    """Local-time window ``HH:MM-HH:MM`` (may span midnight) in which messages are held and
    sent when it ends; empty = never quiet."""
    paths: list[str] = attrs.field(factory=list)
    """Folders whose file systems are watched (library, download and cache folders); empty =
    the state directory only."""
    threshold_percent: float = attrs.field(default=90.0, validator=in_range(1, 100))
    """Percent of the file system in use at which a warning is sent (once, until the use
    drops 2 points below it again)."""
    interval: float = attrs.field(default=300.0, validator=in_range(1, 86400))
    """Seconds between checks of the watched file systems."""


@attrs.frozen
class NotifyConfig:
    """``[notify]``: notifications through Apprise (``json://…``, ``pbul://…``,
    ``mailto://…``, ``tgram://…``) for every pipeline, one route per event kind. ``queue``
    bounds the pending and held messages (extra ones are dropped and counted); ``timeout`` is
    seconds per send; a failed send is tried ``retries`` more times, ``retry_wait`` × n
    seconds apart (AutomatedFanfic: 3 tries, 10/20 s)."""

    urls: list[str] = attrs.field(factory=list, metadata={"secret": True})
    """Apprise URLs of fanfiction messages (the older key; ``[notify.fanfic] urls`` wins when
    set); secret: they carry tokens."""
    queue: int = attrs.field(default=256, validator=in_range(1, 100000))
    """Pending (and held) notifications kept; extra ones are dropped and counted."""
    timeout: float = attrs.field(default=30.0, validator=in_range(0.1, 600))
    """Seconds one send may take."""
    retries: int = attrs.field(default=2, validator=in_range(0, 10))
    """Extra tries of a failed send; 0 = none."""
    retry_wait: float = attrs.field(default=10.0, validator=in_range(0, 3600))
    """Seconds × n between retries of a failed send."""
    job_done: JobRoute = attrs.field(factory=JobRoute)
    """A job finished (``[notify.job_done]``)."""
    job_failed: JobRoute = attrs.field(factory=JobRoute)
    """A job failed for good, after its last retry (``[notify.job_failed]``)."""
    episode_queued: EventRoute = attrs.field(factory=EventRoute)
    """The anime watchlist queued new episodes (``[notify.episode_queued]``)."""
    hath_node: EventRoute = attrs.field(factory=EventRoute)
    """The H@H node stopped, was refused or terminated, or the server warned
    (``[notify.hath_node]``)."""
    disk_full: DiskRoute = attrs.field(factory=DiskRoute)
    """A watched file system is nearly full (``[notify.disk_full]``)."""
    fanfic: EventRoute = attrs.field(factory=EventRoute)
    """Fanfiction messages: story added, skipped, failed (``[notify.fanfic]``)."""

    def route(self, kind: str) -> tuple[list[str], str]:
        """The URLs and quiet-hours text of event ``kind`` (``fanfic`` falls back to the
        older ``urls`` key).

        :raises KeyError: ``kind`` is not one of :data:`EVENT_KINDS`.
        """
        if kind not in EVENT_KINDS:
            raise KeyError(kind)
        route = getattr(self, kind)
        urls = list(route.urls)
        if kind == "fanfic" and not urls:
            urls = list(self.urls)
        return urls, route.quiet_hours

    def any_urls(self) -> bool:
        """Whether any event kind has a URL."""
        return any(self.route(kind)[0] for kind in EVENT_KINDS)
