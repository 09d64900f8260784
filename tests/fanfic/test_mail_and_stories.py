"""Mail text extraction (sans-IO) and story identification with FanFicFare's own functions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fanfic.support import story_mail
from hathd.errors import PermanentError
from hathd.fanfic.mail import extract_text
from hathd.fanfic.stories import (
    Story,
    calibre_search,
    identify,
    stories_in_mail,
    stories_in_text,
)


def test_plain_and_html_parts_are_read() -> None:
    urls = ["http://test1.com?sid=2", "http://test1.com?sid=4"]
    text = extract_text(story_mail(urls, subject="Two updates"))
    assert text.subject == "Two updates"
    assert len(text.plain) == 1
    assert len(text.html) == 1
    assert all(u in text.plain[0] for u in urls)
    assert all(f'href="{u}"' in text.html[0] for u in urls)


def test_stories_are_identified_and_deduplicated() -> None:
    mail = story_mail(
        [
            "http://test1.com?sid=2",
            "http://test1.com?sid=2&chapter=3",  # same story, a chapter link
            "https://m.fanfiction.net/s/1234567/3/Some-Title",
            "https://archiveofourown.org/works/12345/chapters/678",
            "https://example.com/not/a/story",
        ]
    )
    assert stories_in_mail(extract_text(mail)) == [
        Story("http://test1.com?sid=2", "test1.com"),
        # FanFicFare's storyUrl for ffnet keeps chapter 1 and the title slug
        Story("https://www.fanfiction.net/s/1234567/1/Some-Title", "www.fanfiction.net"),
        Story("https://archiveofourown.org/works/12345", "archiveofourown.org"),
    ]


def test_links_fanficfare_dropped_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A link to a supported site that gave no story of that site is named in the log;
    links to unsupported sites and to sites with a story found are not."""
    mail = story_mail(
        [
            "http://test1.com?sid=2",
            "https://www.fanfiction.net/u/123/Some-Author",  # an author page, not a story
            "https://example.com/not/a/story",
        ]
    )
    with caplog.at_level("INFO", logger="hathd.fanfic.stories"):
        stories = stories_in_mail(extract_text(mail))
    assert stories == [Story("http://test1.com?sid=2", "test1.com")]
    dropped = [r.getMessage() for r in caplog.records if "found no story" in r.getMessage()]
    assert dropped == [
        "FanFicFare found no story in https://www.fanfiction.net/u/123/Some-Author"
        " (site www.fanfiction.net)"
    ]


def test_html_only_mail() -> None:
    mail = story_mail(["http://test1.com?sid=9"], html=True)
    text = extract_text(mail)
    assert stories_in_text(html=text.html) == [Story("http://test1.com?sid=9", "test1.com")]


def test_identify_rejects_unknown_sites() -> None:
    assert identify("test1.com?sid=7") == Story("http://test1.com?sid=7", "test1.com")
    with pytest.raises(PermanentError, match="no FanFicFare adapter"):
        identify("http://example.invalid/foo")


def test_attachment_is_skipped() -> None:
    mail = story_mail(["http://test1.com?sid=5"], attachment=3 * 1024 * 1024)
    text = extract_text(mail)
    assert len(text.plain) == 1
    assert "big.bin" not in text.plain[0]
    assert stories_in_mail(text) == [Story("http://test1.com?sid=5", "test1.com")]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"no headers at all, http://test1.com?sid=3",
        b'Content-Type: multipart/mixed; boundary="x\r\n\r\n--y\r\n\r\nbroken',
        b"Content-Type: text/plain; charset=no-such-charset\r\n\r\nhttp://test1.com?sid=3\r\n",
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!***\r\n",
        b"Content-Type: text/html\r\n\r\n<a href='http://test1.com?sid=3'>unclosed",
    ],
)
def test_malformed_mail_does_not_raise(raw: bytes) -> None:
    text = extract_text(raw)
    stories = stories_in_mail(text)
    assert all(s.site == "test1.com" for s in stories)


def test_unknown_charset_keeps_the_url() -> None:
    raw = b"Content-Type: text/plain; charset=no-such-charset\r\n\r\nhttp://test1.com?sid=3\r\n"
    assert stories_in_mail(extract_text(raw)) == [Story("http://test1.com?sid=3", "test1.com")]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_extract_text_never_raises(raw: bytes) -> None:
    text = extract_text(raw)
    assert isinstance(text.plain, tuple)
    assert isinstance(text.html, tuple)


def test_calibre_search_is_fanficfares_own() -> None:
    assert calibre_search("http://test1.com?sid=2") == (
        'identifiers:"~ur(i|l):~^https?://test1\\.com\\?sid=2$"'
    )
    ffnet = calibre_search("https://www.fanfiction.net/s/1234567/1/Some-Title")
    assert ffnet is not None
    assert "1234567/1/(.*)$" in ffnet  # a retitled story is still the same book
