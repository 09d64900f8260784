"""Media-server names: sanitized components, SxxEyy parsing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hathd.anime.naming import (
    MAX_COMPONENT,
    episode_dest,
    folder_name_key,
    is_confined,
    parse_episode_code,
    sanitize,
)


def test_dest_layout() -> None:
    assert episode_dest("Frieren", 2023, 1, 5, "The Hero") == (
        "Frieren (2023)/Season 01/Frieren - S01E05 - The Hero"
    )
    assert episode_dest("Frieren", None, 0, 1, "") == "Frieren/Season 00/Frieren - S00E01"


def test_hostile_titles() -> None:
    dest = episode_dest("AC/DC: ../Live\x07 \U0001f3b8", 2001, 1, 1, "End/../Start\x1b[31m")
    parts = dest.split("/")
    assert parts == [
        "AC DC .. Live \U0001f3b8 (2001)",
        "Season 01",
        "AC DC .. Live \U0001f3b8 - S01E01 - End .. Start [31m",
    ]
    assert sanitize("..") == "untitled"
    assert sanitize(" . ") == "untitled"
    assert sanitize("\u2028x\x00") == "x"


@given(st.text())
def test_sanitize_gives_one_safe_component(text: str) -> None:
    out = sanitize(text)
    assert out not in ("", ".", "..")
    assert "/" not in out
    assert "\\" not in out
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in out)
    assert len(out.encode("utf-8")) <= MAX_COMPONENT
    assert not out.startswith(".")


def test_episode_codes() -> None:
    assert parse_episode_code("Frieren - S01E05 - x.mp4") == (1, 5)
    assert parse_episode_code("show.s2e13.1080p.mkv") == (2, 13)
    assert parse_episode_code("S00.E01 film.mp4") == (0, 1)
    assert parse_episode_code("Episode 5.mp4") is None
    assert folder_name_key("Attack on Titan (2013)") == folder_name_key("attack-on titan")


def test_confined_destinations() -> None:
    assert is_confined("A (2001)/Season 01/A - S01E01")
    for bad in ("", "/etc/x", "a/../b", "a//b", "./a", "a/b\x00c", "a/\x1bb"):
        assert not is_confined(bad), bad


@given(st.text(), st.integers(0, 99), st.integers(0, 9999), st.text())
def test_every_built_destination_is_confined(
    name: str, season: int, number: int, title: str
) -> None:
    assert is_confined(episode_dest(name, 2000, season, number, title))
