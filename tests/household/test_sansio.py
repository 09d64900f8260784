"""Sans-IO cores: quiet hours, the refresh batcher (fake clock), the disk alarm, path mapping,
and which bus events become which notifications."""

from __future__ import annotations

import tomllib
from datetime import datetime, time

import pytest

from hathd.config import Config, structure
from hathd.errors import ConfigError
from hathd.events import Event
from hathd.mediaserver.batcher import RefreshBatcher
from hathd.mediaserver.clients import plex_section_for
from hathd.mediaserver.config import MediaServerConfig
from hathd.mediaserver.plugin import landed_folder
from hathd.notify.config import JobRoute, NotifyConfig
from hathd.notify.disk import DiskAlarm, DiskReading
from hathd.notify.messages import message_for
from hathd.notify.quiet import QuietHours


def load_text(text: str) -> Config:
    return structure(tomllib.loads(text))


def at(hh: int, mm: int = 0) -> datetime:
    return datetime(2026, 3, 14, hh, mm)


def test_quiet_hours_span_midnight() -> None:
    q = QuietHours.parse("22:00-07:00")
    assert q == QuietHours(time(22), time(7))
    assert [q.contains(at(h)) for h in (21, 22, 23, 0, 6)] == [False, True, True, True, True]
    assert not q.contains(at(7))
    assert q.ends_after(at(23, 30)) == datetime(2026, 3, 15, 7, 0)
    assert q.ends_after(at(3)) == datetime(2026, 3, 14, 7, 0)
    assert q.ends_after(at(12)) == at(12)
    day = QuietHours.parse("12:30-13:00")
    assert day is not None
    assert day.contains(at(12, 45))
    assert not day.contains(at(13))
    assert QuietHours.parse("") is None
    for bad in ("7:00-8:00", "22:00-24:00", "10:00-10:00", "night"):
        with pytest.raises(ValueError):
            QuietHours.parse(bad)


def test_bad_quiet_hours_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        load_text('[notify.job_done]\nquiet_hours = "25:00-07:00"\n')
    assert any(key == "notify.job_done.quiet_hours" for key, _ in err.value.problems)


def test_fanfic_keeps_the_older_urls_key() -> None:
    cfg = load_text('[notify]\nurls = ["json://127.0.0.1:1/a"]\n').notify
    assert cfg.route("fanfic") == (["json://127.0.0.1:1/a"], "")
    assert cfg.route("job_done")[0] == []
    own = NotifyConfig(urls=["json://old/"], fanfic=attrs_route(["json://new/"]))
    assert own.route("fanfic")[0] == ["json://new/"]


def attrs_route(urls: list[str]) -> object:
    from hathd.notify.config import EventRoute

    return EventRoute(urls=urls)


def test_batcher_one_refresh_per_folder_on_a_fake_clock() -> None:
    b = RefreshBatcher(5.0)
    for t, name in [(0.0, "/lib/A/S01"), (1.0, "/lib/A/S01"), (2.5, "/lib/A/S01")]:
        b.add(name, t)
    b.add("/lib/B", 3.0)
    assert b.next_due() == 7.5
    assert b.pop_due(7.4) == []
    assert b.pop_due(7.5) == [("/lib/A/S01", 3)]
    assert b.pop_due(8.0) == [("/lib/B", 1)]
    assert b.next_due() is None
    assert len(b) == 0
    # a folder that keeps filling is still refreshed after 4 windows
    for t in range(0, 30, 2):
        b.add("/busy", float(t))
        if b.pop_due(float(t)):
            break
    else:
        pytest.fail("never due")
    assert t == 20


def test_disk_alarm_warns_once_until_it_falls_below() -> None:
    alarm = DiskAlarm(90.0)
    feed = [89.0, 90.0, 95.0, 89.0, 87.9, 91.0]
    got = [alarm.feed(DiskReading("/x", p, 1, 100)) for p in feed]
    assert got == [False, True, False, False, False, True]


def test_server_path_mapping_and_libraries() -> None:
    s = MediaServerConfig(
        local_prefix="/srv/media", server_prefix="/data", libraries=["/srv/media/anime"]
    )
    assert s.server_path("/srv/media/anime/X/Season 01") == "/data/anime/X/Season 01"
    assert s.server_path("/elsewhere/x") == "/elsewhere/x"
    assert s.server_path("/srv/mediax/y") == "/srv/mediax/y"
    assert s.covers("/srv/media/anime/X")
    assert not s.covers("/srv/media/films")


def test_plex_section_is_the_longest_location() -> None:
    xml = (
        b'<MediaContainer><Directory key="1"><Location path="/data"/></Directory>'
        b'<Directory key="7"><Location path="/data/anime"/><Location path="/x"/></Directory>'
        b"</MediaContainer>"
    )
    assert plex_section_for(xml, "/data/anime/Frieren/Season 01") == "7"
    assert plex_section_for(xml, "/data/films") == "1"
    assert plex_section_for(xml, "/other") is None


def test_landed_folder_of_results() -> None:
    ep = {"result": {"path": "/lib/F/Season 01/F - S01E01.mp4", "already_present": False}}
    assert landed_folder(ep) == "/lib/F/Season 01"
    assert landed_folder({"result": {"path": "/lib/x.mp4", "already_present": True}}) is None
    assert landed_folder({"result": {"dest": "/dl/Show", "kind": "dir"}}) == "/dl/Show"
    assert landed_folder({"result": {"dest": "/dl/a.mkv", "kind": "file"}}) == "/dl"
    assert landed_folder({"result": {"dest": "/dl/a.mkv", "skipped": True}}) is None
    assert landed_folder({"result": {"path": "relative/x"}}) is None
    assert landed_folder({"result": None}) is None


def ev(room: str, type_: str, **data: object) -> Event:
    return Event(1, 0.0, room, type_, dict(data))


def test_events_become_notifications() -> None:
    cfg = NotifyConfig()
    kind, note = message_for(
        ev("jobs", "done", kind="anime-episode", target="u", result={"path": "/l/e.mp4"}), cfg
    ) or (None, None)
    assert kind == "job_done"
    assert note is not None
    assert (note.title, note.body, note.notify_type) == (
        "Job done: anime-episode",
        "u\n→ /l/e.mp4",
        "success",
    )
    failed = message_for(
        ev("jobs", "failed", kind="transfer", target="t", error="gone", attempts=4), cfg
    )
    assert failed is not None
    assert failed[0] == "job_failed"
    assert failed[1].body == "t\ngone\n(after 4 tries)"
    assert failed[1].notify_type == "failure"
    assert message_for(ev("jobs", "done", kind="media-refresh", target="/l"), cfg) is None
    assert message_for(ev("jobs", "waiting", kind="transfer", target="t"), cfg) is None
    only = NotifyConfig(job_done=JobRoute(kinds=["transfer"]))
    assert message_for(ev("jobs", "done", kind="anime-episode", target="u"), only) is None
    queued = message_for(
        ev(
            "anime",
            "watchlist-queued",
            series="frieren",
            jobs=[
                {"season": 1, "episode": 4, "job": "a", "created": True},
                {"season": 1, "episode": 3, "job": "b", "created": False},
                {"season": 1, "episode": 5, "skipped": "no hoster"},
            ],
        ),
        cfg,
    )
    assert queued is not None
    assert queued[0] == "episode_queued"
    assert (queued[1].title, queued[1].body) == ("New episode queued: frieren", "S01E04")
    off = message_for(ev("hath", "terminated", status="TERM_BAD_NETWORK"), cfg)
    assert off is not None
    assert off[0] == "hath_node"
    assert "TERM_BAD_NETWORK" in off[1].body
    warn = message_for(ev("hath", "warning", message="still_alive: FAIL"), cfg)
    assert warn is not None
    assert warn[1].body == "still_alive: FAIL"
    assert message_for(ev("hath", "prune", files=1), cfg) is None
