"""The event bus: rooms, full payloads, a slow subscriber is dropped with ``lagged``."""

from __future__ import annotations

from hathd.events import EventBus


async def test_rooms_filter_and_order() -> None:
    bus = EventBus()
    async with bus.subscribe(["jobs"]) as jobs, bus.subscribe(["*"]) as everything:
        bus.publish("jobs", "job", {"id": "a"})
        bus.publish("system", "service", {"name": "x"})
        bus.publish("jobs", "job", {"id": "b"})
        got_jobs = [jobs._recv.receive_nowait().data["id"] for _ in range(2)]
        assert got_jobs == ["a", "b"]
        got_all = [everything._recv.receive_nowait().type for _ in range(3)]
        assert got_all == ["job", "service", "job"]
    assert bus.statistics().subscribers == 0


async def test_slow_subscriber_is_dropped_with_lagged_notice() -> None:
    bus = EventBus()
    async with (
        bus.subscribe(["progress"], buffer=4) as slow,
        bus.subscribe(["progress"], buffer=1000) as fast,
    ):
        for n in range(10):
            bus.publish("progress", "tick", {"n": n})  # never blocks
        received = [event async for event in slow]
        assert [e.data["n"] for e in received[:4]] == [0, 1, 2, 3]
        assert received[-1].type == "lagged"
        assert len(received) == 5
        assert slow.lagged
        assert [fast._recv.receive_nowait().data["n"] for _ in range(10)] == list(range(10))
    stats = bus.statistics()
    assert stats.lagged_drops == 1
    assert stats.published == 10


async def test_sequence_numbers_increase() -> None:
    bus = EventBus()
    first = bus.publish("system", "a", {})
    second = bus.publish("system", "b", {})
    assert second.seq == first.seq + 1
    assert second.to_json()["type"] == "b"
