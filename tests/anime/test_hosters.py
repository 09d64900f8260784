"""Hoster resolvers (sans-IO) on pages built like the public ones, and on changed markup."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anime.hoster_fixtures import (
    doodstream_page,
    filemoon_page,
    pack_js,
    streamtape_page,
    vidoza_page,
    voe_encode,
    voe_legacy_page,
    voe_page,
    voe_redirect_page,
)
from hathd.anime.hosters import (
    RESOLVERS,
    Fetch,
    HosterChanged,
    HosterError,
    Stream,
    UnknownHoster,
    doodstream,
    normalize,
    resolve,
    voe,
)
from hathd.anime.placement import media_extension

PAGE = "https://hoster.example/e/abc123"
REFERER = {"Referer": "https://hoster.example/"}


def test_every_named_hoster_has_a_resolver() -> None:
    assert set(RESOLVERS) >= {"voe", "vidoza", "doodstream", "streamtape", "filemoon"}
    assert normalize("VOE") == "voe"
    assert normalize("Dood") == "doodstream"
    assert normalize("Stream Tape") == "streamtape"


def test_vidoza_gives_the_mp4() -> None:
    page = vidoza_page("https://str38.vidoza.net/vod/v2/abc/v.mp4")
    assert resolve("Vidoza", page, PAGE) == Stream(
        "https://str38.vidoza.net/vod/v2/abc/v.mp4", "direct", REFERER
    )


def test_vidoza_falls_back_to_the_video_source_tag() -> None:
    page = '<video><source src="//cdn.vidoza.net/x.mp4" type="video/mp4"></video>'
    assert resolve("vidoza", page, PAGE).url == "https://cdn.vidoza.net/x.mp4"  # type: ignore[union-attr]


def test_voe_player_data_gives_the_hls_playlist() -> None:
    page = voe_page("https://cdn.voe.example/engine/hls2/01/abc/master.m3u8?t=x")
    assert resolve("voe", page, PAGE) == Stream(
        "https://cdn.voe.example/engine/hls2/01/abc/master.m3u8?t=x", "hls", REFERER
    )


def test_voe_decodes_its_own_encoding_of_any_object() -> None:
    data = {"source": "https://a/b.m3u8", "direct_access_url": "https://a/b.mp4", "n": 7}
    assert voe.decode_player_data(voe_encode(data)) == data


def test_voe_direct_access_url_when_there_is_no_source() -> None:
    page = f'<script type="application/json">["{voe_encode({"direct_access_url": "https://a/v.mp4"})}"]</script>'
    assert resolve("voe", page, PAGE) == Stream("https://a/v.mp4", "direct", REFERER)


def test_voe_legacy_base64_hls() -> None:
    assert resolve("voe", voe_legacy_page("https://a/x/index.m3u8"), PAGE) == Stream(
        "https://a/x/index.m3u8", "hls", REFERER
    )


def test_voe_mirror_redirect_is_a_fetch_then_the_stream() -> None:
    step = resolve("voe", voe_redirect_page("https://mirror.example/e/abc123"), PAGE)
    assert isinstance(step, Fetch)
    assert step.url == "https://mirror.example/e/abc123"
    stream = step.then(voe_page("https://m/x.m3u8"), step.url)
    assert stream == Stream("https://m/x.m3u8", "hls", {"Referer": "https://mirror.example/"})
    with pytest.raises(HosterChanged, match="after the mirror redirect"):
        step.then("<html>nothing</html>", step.url)


def test_doodstream_asks_pass_md5_then_adds_token_and_expiry() -> None:
    page = doodstream_page("/pass_md5/abc-123/tok9xyz", "tok9xyz")
    step = doodstream.resolve(page, PAGE, now_ms=lambda: 1700000000000, suffix=lambda: "AbCdEfGhIj")
    assert step.url == "https://hoster.example/pass_md5/abc-123/tok9xyz"
    assert step.headers == {"Referer": PAGE}
    stream = step.then("https://cdn.dood.example/u5kj/abc~\n", step.url)
    assert stream == Stream(
        "https://cdn.dood.example/u5kj/abc~AbCdEfGhIj?token=tok9xyz&expiry=1700000000000",
        "direct",
        REFERER,
    )
    with pytest.raises(HosterChanged, match="pass_md5 base URL"):
        step.then("<html>Video not found</html>", step.url)


def test_streamtape_applies_the_substring_cuts() -> None:
    page = streamtape_page("https://streamtape.com/get_video?id=Xy1&expires=9&ip=AB&token=", "tK5")
    assert resolve("streamtape", page, PAGE) == Stream(
        "https://streamtape.com/get_video?id=Xy1&expires=9&ip=AB&token=tK5&stream=1",
        "direct",
        REFERER,
    )


def test_filemoon_unpacks_the_player_setup() -> None:
    page = filemoon_page("https://be6721.rcr72.waw04.cdn.example/hls2/01/x/master.m3u8?t=a&s=1")
    assert resolve("filemoon", page, PAGE) == Stream(
        "https://be6721.rcr72.waw04.cdn.example/hls2/01/x/master.m3u8?t=a&s=1", "hls", REFERER
    )


@pytest.mark.parametrize(
    ("hoster", "page", "missing"),
    [
        ("vidoza", "<html><video></video></html>", "sourcesCode src"),
        (
            "vidoza",
            'sourcesCode: [{ src: "javascript:alert(1)" }]',
            "sourcesCode src (not an http(s) URL",
        ),
        ("voe", "<html><div id='player'></div></html>", "player data or 'hls' source"),
        ("voe", '<script type="application/json">["garbage!!"]</script>', "decodable player data"),
        (
            "voe",
            f'<script type="application/json">["{voe_encode({"title": "x"})}"]</script>',
            "player data source",
        ),
        ("doodstream", "<html>makePlay token=abc'</html>", "pass_md5"),
        ("doodstream", "$.get('/pass_md5/1/2')", "token"),
        ("streamtape", "<div id='robotlink'></div>", "robotlink"),
        (
            "streamtape",
            "document.getElementById('robotlink').innerHTML = '//st/x?a=' + ('xyzt').substring(1);",
            "get_video id",
        ),
        ("filemoon", "<html>jwplayer</html>", "packed player script"),
        ("filemoon", f"<script>{pack_js('jwplayer().setup({image:1});')}</script>", "sources file"),
    ],
)
def test_changed_markup_names_what_is_missing(hoster: str, page: str, missing: str) -> None:
    with pytest.raises(HosterChanged) as err:
        resolve(hoster, page, PAGE)
    assert err.value.hoster == hoster
    assert missing in err.value.missing
    assert str(err.value).startswith(f"{hoster}: page markup changed: ")


def test_an_unknown_hoster_is_named() -> None:
    with pytest.raises(UnknownHoster, match="megaupload: no resolver"):
        resolve("megaupload", "", PAGE)


@given(hoster=st.sampled_from(sorted(RESOLVERS)), page=st.text(max_size=400))
def test_any_text_resolves_or_fails_with_a_hoster_error(hoster: str, page: str) -> None:
    try:
        result = resolve(hoster, page, PAGE)
    except HosterError:
        return
    assert isinstance(result, Stream | Fetch)


def test_media_is_recognised_by_its_first_bytes() -> None:
    assert media_extension(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00") == ".mp4"
    assert media_extension(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm") == ".webm"
    assert media_extension(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01matroska") == ".mkv"
    assert media_extension((b"\x47" + b"\x00" * 187) * 2) == ".ts"
    assert media_extension(b"<!DOCTYPE html><html>") is None
    assert media_extension(b"") is None
