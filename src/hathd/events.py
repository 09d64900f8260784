"""The in-process event bus: rooms, bounded subscribers, ``lagged`` instead of stalling.

``publish()`` never blocks and never awaits: each subscriber has a bounded buffer, and one that
falls behind is dropped. Its iterator then yields a final event of type ``lagged`` and ends, so
a WebSocket client can say "you missed events, reload" instead of the engine stalling behind it.

Rooms in use: ``system`` (service state changes), ``jobs`` (job transitions with the full job),
``progress`` (throttled job progress), ``hath`` (the image node).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

ROOMS: frozenset[str] = frozenset({"system", "jobs", "progress", "hath", "anime"})
"""The rooms events are published to; ``"*"`` subscribes to all of them."""


@attrs.frozen
class Event:
    """One event: sequence number, wall-clock time (seconds since the epoch), room, type, data."""

    seq: int
    time: float
    room: str
    type: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON-ready mapping."""
        return {
            "seq": self.seq,
            "time": self.time,
            "room": self.room,
            "type": self.type,
            "data": self.data,
        }


@attrs.define(eq=False)
class Subscription:
    """A subscriber's bounded buffer; iterate it to receive events."""

    rooms: frozenset[str]
    _send: trio.MemorySendChannel[Event]
    _recv: trio.MemoryReceiveChannel[Event]
    lagged: bool = False
    dropped_at_seq: int = 0

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        async for event in self._recv:
            yield event
        if self.lagged:
            yield Event(
                self.dropped_at_seq,
                time.time(),
                "system",
                "lagged",
                {"reason": "subscriber buffer full; events were dropped"},
            )


@attrs.frozen
class BusStatistics:
    """Subscribers now, events published, subscribers dropped for lagging."""

    subscribers: int
    published: int
    lagged_drops: int


class EventBus:
    """Publish/subscribe by room. ``publish`` is synchronous and O(subscribers)."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._seq = itertools.count(1)
        self._published = 0
        self._lagged = 0

    def publish(self, room: str, type: str, data: dict[str, Any]) -> Event:
        """Deliver an event to every subscriber of ``room``; drop those whose buffer is full."""
        event = Event(next(self._seq), time.time(), room, type, data)
        self._published += 1
        for sub in list(self._subs):
            if room not in sub.rooms and "*" not in sub.rooms:
                continue
            try:
                sub._send.send_nowait(event)
            except trio.WouldBlock:
                sub.lagged = True
                sub.dropped_at_seq = event.seq
                self._lagged += 1
                self._subs.discard(sub)
                sub._send.close()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._subs.discard(sub)
        return event

    @asynccontextmanager
    async def subscribe(
        self, rooms: Iterable[str], *, buffer: int = 256
    ) -> AsyncIterator[Subscription]:
        """Subscribe to ``rooms`` (``"*"`` for all) with a buffer of ``buffer`` events."""
        send, recv = trio.open_memory_channel[Event](buffer)
        sub = Subscription(frozenset(rooms), send, recv)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)
            send.close()
            recv.close()

    def statistics(self) -> BusStatistics:
        """Counters of the bus."""
        return BusStatistics(len(self._subs), self._published, self._lagged)
