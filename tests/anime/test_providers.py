"""The aniworld.to / s.to site engine parses stored pages; changed markup names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from hathd.anime.model import HosterLink
from hathd.anime.preferences import order_candidates
from hathd.anime.providers.aniworld import aniworld, sto
from hathd.anime.providers.base import MarkupChanged, find_provider

FIX = Path(__file__).parent / "fixtures"
AW = aniworld("https://aniworld.to")


def _read(name: str) -> str:
    return (FIX / name).read_text(encoding="utf-8")


def test_search_keeps_series_and_strips_marks() -> None:
    hits = AW.parse_search((FIX / "aniworld_search.json").read_bytes())
    assert [(h.key, h.name, h.url) for h in hits] == [
        ("frieren", "Frieren", "https://aniworld.to/anime/stream/frieren")
    ]
    url, form = AW.search_request("Frie")
    assert (url, form) == ("https://aniworld.to/ajax/search", {"keyword": "Frie"})


def test_search_answer_that_is_not_json_names_it() -> None:
    with pytest.raises(MarkupChanged, match="search page markup changed: JSON array"):
        AW.parse_search(b"<html>Wartungsarbeiten</html>")
    with pytest.raises(MarkupChanged, match="link"):
        AW.parse_search(b'[{"title": "x"}]')


def test_series_page() -> None:
    url = AW.series_url("frieren")
    info = AW.parse_series(_read("aniworld_series.html"), "frieren", url)
    assert info.name == "Frieren"
    assert info.year == 2023
    assert info.status == "ongoing"
    assert info.description == "An elf mage outlives her party."
    assert info.cover_url == "https://aniworld.to/public/img/cover/frieren-cover.jpg"
    assert [(s.number, s.url) for s in info.seasons] == [
        (0, "https://aniworld.to/anime/stream/frieren/filme"),
        (1, "https://aniworld.to/anime/stream/frieren/staffel-1"),
        (2, "https://aniworld.to/anime/stream/frieren/staffel-2"),
    ]


def test_season_and_film_pages() -> None:
    eps = AW.parse_season(_read("aniworld_season.html"), 1, "u")
    assert [(e.number, e.title) for e in eps] == [(i, f"Episode {i}") for i in range(1, 5)]
    assert eps[0].url == "https://aniworld.to/anime/stream/frieren/staffel-1/episode-1"
    assert eps[0].languages == ("de-dub", "de-sub")
    films = AW.parse_season(_read("aniworld_films.html"), 0, "u")
    assert [(f.season, f.number, f.title, f.languages) for f in films] == [
        (0, 1, "The Movie", ("de-sub",))
    ]


def test_episode_page_maps_language_ids_through_the_flags() -> None:
    links = AW.parse_episode(_read("aniworld_episode.html"), "u")
    assert [(x.hoster, x.language) for x in links] == [
        ("voe", "de-dub"),
        ("vidoza", "de-dub"),
        ("voe", "de-sub"),
        ("vidoza", "de-sub"),
    ]
    assert links[0].url == "https://aniworld.to/redirect/1000"


@pytest.mark.parametrize(
    ("page", "html", "field"),
    [
        ("series", "<html><body><h1>Frieren</h1></body></html>", "title"),
        (
            "series",
            '<div class="series-title"><h1><span>X</span></h1></div><p>no nav</p>',
            "season list",
        ),
        ("season", "<html><table class='other'></table></html>", "episode table"),
        ("episode", "<html><div class='player-v2'></div></html>", "hoster list"),
    ],
)
def test_changed_markup_is_an_error_naming_the_field(page: str, html: str, field: str) -> None:
    parse = {
        "series": lambda: AW.parse_series(html, "k", "https://aniworld.to/anime/stream/k"),
        "season": lambda: AW.parse_season(html, 1, "https://aniworld.to/x"),
        "episode": lambda: AW.parse_episode(html, "https://aniworld.to/x"),
    }[page]
    with pytest.raises(MarkupChanged) as info:
        parse()
    assert info.value.page == page
    assert field in info.value.field
    assert f"{page} page markup changed" in str(info.value)


def test_a_row_without_number_is_not_skipped() -> None:
    html = _read("aniworld_season.html").replace('itemprop="episodeNumber"', 'itemprop="n"')
    html = html.replace('data-episode-season-id="', 'data-episode-season-id="x')
    with pytest.raises(MarkupChanged, match="episode number"):
        AW.parse_season(html, 1, "u")


def test_sto_uses_its_prefix_and_mirror_base_urls() -> None:
    site = sto("https://serienstream.example/")
    assert site.domain == "serienstream.example"
    assert site.series_url("frieren") == "https://serienstream.example/serie/stream/frieren"
    info = site.parse_series(_read("sto_series.html"), "frieren", "u")
    assert info.seasons[1].url == "https://serienstream.example/serie/stream/frieren/staffel-1"
    assert site.key_from_url("https://serienstream.example/serie/stream/frieren/staffel-2") == (
        "frieren"
    )
    assert site.key_from_url("https://aniworld.to/anime/stream/frieren") is None
    assert AW.key_from_url("https://aniworld.to/anime/stream/../etc") is None
    assert find_provider([AW, site], "https://aniworld.to/anime/stream/x/staffel-1") is AW


def test_candidates_follow_language_then_hoster_preference() -> None:
    links = [
        HosterLink("voe", "de-sub", "1"),
        HosterLink("doodstream", "de-dub", "2"),
        HosterLink("vidoza", "de-dub", "3"),
        HosterLink("newhost", "de-dub", "4"),
        HosterLink("voe", "en-dub", "5"),
    ]
    ordered = order_candidates(links, ["de-dub", "de-sub"], ["vidoza", "Dood Stream", "voe"])
    assert [c.url for c in ordered] == ["3", "2", "4", "1"]
