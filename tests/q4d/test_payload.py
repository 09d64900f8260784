"""Down payload parsing and Label formatting (sans-IO)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hathd.q4d.payload import (
    NOT_USED,
    DownEvent,
    Rejected,
    RejectReason,
    format_down,
    format_label,
    parse_down,
)


def test_seedbox_payload_with_trailing_newline() -> None:
    event = parse_down(b"/home/u/files/My Movie (2024)\tABCDEF0123\tM\n")
    assert event == DownEvent("/home/u/files/My Movie (2024)", "ABCDEF0123", "M")
    assert isinstance(event, DownEvent)
    assert event.name == "My Movie (2024)"
    assert event.has_hash
    assert event.dedupe_key == "ABCDEF0123"


def test_extra_fields_are_ignored_and_crlf_stripped() -> None:
    event = parse_down(b"/a/b.mkv\tH1\tT\textra\tmore\r\n")
    assert event == DownEvent("/a/b.mkv", "H1", "T")


def test_not_used_hash_gets_no_label_and_dedupes_on_path() -> None:
    event = parse_down(format_down("/x/y z", NOT_USED, "V"))
    assert isinstance(event, DownEvent)
    assert not event.has_hash
    assert event.dedupe_key == "path:/x/y z"


def test_trailing_slash_directory_name() -> None:
    event = parse_down(b"/files/Show S01/\th\tT")
    assert isinstance(event, DownEvent)
    assert event.name == "Show S01"


def test_rejections() -> None:
    cases = {
        b"/only/path\tHASH": RejectReason.TOO_FEW_FIELDS,
        b"": RejectReason.TOO_FEW_FIELDS,
        b"\xff\xfe\tH\tM": RejectReason.BAD_ENCODING,
        b"\tH\tM": RejectReason.EMPTY_PATH,
        b"   \tH\tM": RejectReason.EMPTY_PATH,
        b"/a/..\tH\tM": RejectReason.BAD_PATH,
        b"/\tH\tM": RejectReason.BAD_PATH,
        b"/a/b\nc\tH\tM": RejectReason.BAD_PATH,
        b"x" * 70000 + b"\tH\tM": RejectReason.TOO_LARGE,
    }
    for payload, reason in cases.items():
        result = parse_down(payload)
        assert isinstance(result, Rejected), payload[:40]
        assert result.reason is reason, payload[:40]
        assert result.detail


def test_label_format_matches_the_seedbox_reader() -> None:
    # LabelD.sh splits on TAB into hash and label; mosquitto_pub -m "$(printf …)" drops the
    # trailing newline.
    assert format_label("ABCDEF", "DONE") == b"ABCDEF\tDONE"


@given(st.binary(max_size=300))
def test_never_raises_on_arbitrary_bytes(payload: bytes) -> None:
    result = parse_down(payload)
    assert isinstance(result, DownEvent | Rejected)
    if isinstance(result, DownEvent):
        assert result.path.strip()
        assert result.name not in ("", ".", "..")


@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\t"),
        min_size=1,
        max_size=80,
    ).filter(lambda p: p.strip() and p.rstrip("/").rsplit("/", 1)[-1] not in ("", ".", "..")),
    st.text(alphabet="0123456789ABCDEF", min_size=1, max_size=40),
    st.sampled_from(["M", "T", "A", "ERR", ""]),
)
def test_round_trip(path: str, hash_: str, code: str) -> None:
    assert parse_down(format_down(path, hash_, code)) == DownEvent(path, hash_, code)
