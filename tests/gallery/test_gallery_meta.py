"""The sans-IO parser of ``fetchqueue`` replies (docs/hath-protocol.md §6)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hathd.hath.gallery_meta import (
    GalleryMeta,
    GalleryMetaError,
    InvalidRequest,
    NoPendingDownloads,
    parse_gallery_meta,
    parse_queue_reply,
)

SHA_A = hashlib.sha1(b"a").hexdigest()
SHA_B = hashlib.sha1(b"b").hexdigest()

GOOD = (
    "GID 123456\n"
    "FILECOUNT 3\n"
    "MINXRES 1280\n"
    "TITLE  Ünïcode * title: with | things \n"
    "\n"
    "FILELIST\n"
    f"2 7002 1280 {SHA_B} png second page\n"
    f"1 7001 1280 {SHA_A} jpg 001\n"
    "3 7003 org unknown gif  leading space name\n"
    "INFORMATION\n"
    "Uploader: someone\n"
    "\n"
    "Tags: a, b\n"
)


def test_status_replies() -> None:
    assert parse_queue_reply(b"NO_PENDING_DOWNLOADS\n") == NoPendingDownloads()
    assert parse_queue_reply("INVALID_REQUEST") == InvalidRequest()
    assert parse_queue_reply(b"  NO_PENDING_DOWNLOADS\r\n") == NoPendingDownloads()


def test_full_metadata() -> None:
    meta = parse_queue_reply(GOOD.encode("utf-8"))
    assert isinstance(meta, GalleryMeta)
    assert (meta.gid, meta.filecount, meta.minxres) == (123456, 3, "1280")
    assert meta.title == " Ünïcode * title: with | things "
    assert [f.page for f in meta.files] == [1, 2, 3]
    first, second, third = meta.files
    assert (first.fileindex, first.xres, first.sha1, first.filetype, first.filename) == (
        7001,
        "1280",
        SHA_A,
        "jpg",
        "001",
    )
    assert second.filename == "second page"
    assert second.name == "second page.png"
    assert third.sha1 is None
    assert third.filename == " leading space name"
    # INFORMATION is verbatim, blank lines and the final newline included.
    assert meta.information == "Uploader: someone\n\nTags: a, b\n"
    assert meta.xres_title == "-1280x"
    assert meta.queue_add == "123456;1280"


def test_org_has_no_xres_title() -> None:
    meta = parse_gallery_meta(GOOD.replace("MINXRES 1280", "MINXRES org"))
    assert meta.xres_title == ""
    assert meta.queue_add == "123456;org"


def test_crlf_lines() -> None:
    meta = parse_queue_reply(GOOD.replace("\n", "\r\n").encode())
    assert isinstance(meta, GalleryMeta)
    assert meta.files[0].filename == "001"
    assert meta.title.endswith("things ")


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (("GID 123456", "GID 0"), "GID must be > 0"),
        (("GID 123456", "GID x1"), "GID is not"),
        (("GID 123456\n", ""), "missing GID"),
        (("FILECOUNT 3", "FILECOUNT 0"), "FILECOUNT must be > 0"),
        (("FILECOUNT 3", "FILECOUNT 4"), "pages must be exactly 1..4"),
        (("MINXRES 1280", "MINXRES huge"), "bad MINXRES"),
        (("TITLE  Ünïcode * title: with | things ", "TITLE   "), "empty TITLE"),
        ((f"{SHA_A} jpg 001", f"{SHA_A} jpg"), "6 fields"),
        ((f"{SHA_A} jpg 001", "deadbeef jpg 001"), "bad sha1"),
        ((f"{SHA_A} jpg 001", f"{SHA_A} j/g 001"), "bad filetype"),
        (("1 7001", "2 7001"), "pages must be exactly"),
        (("1 7001", "-1 7001"), "page is not"),
        (("FILELIST\n", ""), "no FILELIST"),
    ],
)
def test_malformed_metadata_is_rejected(mutation: tuple[str, str], message: str) -> None:
    old, new = mutation
    assert old in GOOD
    with pytest.raises(GalleryMetaError, match=message):
        parse_queue_reply(GOOD.replace(old, new, 1))


def test_error_names_the_line() -> None:
    with pytest.raises(GalleryMetaError) as info:
        parse_queue_reply(GOOD.replace("deadbeef", "x").replace(SHA_B, "nothex"))
    assert info.value.line == 7


@pytest.mark.parametrize("body", [b"", b"\n\n", b"\xff\xfe garbage", b"OK\n"])
def test_garbage_replies(body: bytes) -> None:
    with pytest.raises(GalleryMetaError):
        parse_queue_reply(body)


@given(st.binary(max_size=300))
def test_never_crashes_on_arbitrary_bytes(body: bytes) -> None:
    try:
        parse_queue_reply(body)
    except GalleryMetaError:
        pass


@given(
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), min_size=1
    ).filter(lambda t: t.strip() != ""),
    st.lists(
        st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), min_size=1
        ).filter(lambda s: s.strip() != "" and s not in ("INFORMATION",)),
        min_size=1,
        max_size=5,
    ),
)
def test_round_trip_of_titles_and_names(title: str, names: list[str]) -> None:
    lines = ["GID 9", f"FILECOUNT {len(names)}", "MINXRES org", f"TITLE {title}", "FILELIST"]
    lines += [f"{i} {100 + i} org unknown jpg {n}" for i, n in enumerate(names, start=1)]
    lines += ["INFORMATION", "x"]
    meta = parse_gallery_meta("\n".join(lines))
    assert meta.title == title
    assert [f.filename for f in meta.files] == names
