"""The H@H node's ``warning`` events (against the fake control server over real TLS) and the
``hath_node`` notifications they make."""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path

import trio

from fakes.hath_control import open_fake_control
from hath.helpers import CREDS, new_node
from hathd.events import Event
from hathd.notify.config import NotifyConfig
from hathd.notify.messages import message_for
from hathd.store import open_store


async def _events_of(
    tmp_path: Path, replies: dict[str, tuple[str, ...]], until: str
) -> list[Event]:
    seen: list[Event] = []
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            for act, answers in replies.items():
                fake.script(act, *answers)
            async with open_store(tmp_path / "hathd.sqlite3") as store:
                node = new_node(tmp_path, fake, store, still_alive_interval=1.0)
                async with node.bus.subscribe(["hath"]) as sub, trio.open_nursery() as nursery:
                    await nursery.start(node.serve)
                    async with aclosing(aiter(sub)) as stream:
                        async for event in stream:
                            seen.append(event)
                            if event.type == "warning" and until in event.data["message"]:
                                break
                    nursery.cancel_scope.cancel()
    return seen


async def test_a_failed_connect_test_warns(tmp_path: Path) -> None:
    events = await _events_of(
        tmp_path, {"client_start": ("FAIL_CONNECT_TEST:port 1 unreachable",)}, "client_start"
    )
    warning = events[-1]
    assert warning.data == {
        "status": "FAIL_CONNECT_TEST:port 1 unreachable",
        "message": "client_start: FAIL_CONNECT_TEST:port 1 unreachable",
    }
    made = message_for(warning, NotifyConfig())
    assert made is not None
    kind, note = made
    assert (kind, note.title, note.notify_type) == ("hath_node", "H@H node warning", "warning")
    assert note.body == "client_start: FAIL_CONNECT_TEST:port 1 unreachable"


async def test_a_failed_still_alive_warns_and_the_node_goes_on(tmp_path: Path) -> None:
    events = await _events_of(
        tmp_path, {"still_alive": ("FAIL_OVERLOADED:later", "OK")}, "still_alive"
    )
    assert [e.type for e in events if e.type in ("started", "warning")] == ["started", "warning"]
    assert events[-1].data["message"] == "still_alive: FAIL_OVERLOADED:later"
