"""The sans-IO H@H protocol: formulas checked against independently computed digests."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hathd.hath import protocol as p

KEY = "abcdefghij0123456789"
CREDS = p.Credentials(1234, KEY)
HASH = "0123456789abcdef0123456789abcdef01234567"
FILEID = f"{HASH}-1024-800-600-jpg"


def _sha1(s: str) -> str:
    return hashlib.sha1(s.encode()).hexdigest()


def test_fileid_long_and_short_forms_roundtrip() -> None:
    f = p.FileId.parse(FILEID)
    assert (f.hash, f.size, f.xres, f.yres, f.type) == (HASH, 1024, 800, 600, "jpg")
    assert str(f) == FILEID
    assert f.static_range == "0123"
    assert f.relpath == f"01/23/{FILEID}"
    assert f.mime_type == "image/jpeg"
    assert f.lru_slot == (0x45678, 9)
    short = p.FileId.parse(f"{HASH}-5-wbm")
    assert short.xres is None
    assert str(short) == f"{HASH}-5-wbm"
    assert short.mime_type == "video/webm"
    assert p.FileId.parse(f"{HASH}-5-zzz").mime_type == "application/octet-stream"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        HASH,
        f"{HASH.upper()}-1-jpg",
        f"{HASH[:-1]}-1-jpg",
        f"{HASH}-12345678901-jpg",
        f"{HASH}-1-123456-1-jpg",
        f"{HASH}-1-1-jpg",
        f"{HASH}-1-jpg/../x",
        f"../{HASH}-1-jpg",
        f"{HASH}--1-jpg",
    ],
)
def test_fileid_rejects_malformed(bad: str) -> None:
    with pytest.raises(p.ProtocolError):
        p.FileId.parse(bad)
    assert p.FileId.try_parse(bad) is None


@given(
    h=st.text("0123456789abcdef", min_size=40, max_size=40),
    size=st.integers(0, 9_999_999_999),
    res=st.one_of(st.none(), st.tuples(st.integers(0, 99999), st.integers(0, 99999))),
    typ=st.sampled_from(sorted(p.FILE_TYPES)),
)
def test_fileid_roundtrip_property(
    h: str, size: int, res: tuple[int, int] | None, typ: str
) -> None:
    text = f"{h}-{size}-{typ}" if res is None else f"{h}-{size}-{res[0]}-{res[1]}-{typ}"
    assert str(p.FileId.parse(text)) == text


def test_keystamp_formula_and_window() -> None:
    t = 1_700_000_000
    want = _sha1(f"{t}-{FILEID}-{KEY}-hotlinkthis")[:10]
    assert p.make_keystamp(FILEID, t, KEY) == f"{t}-{want}"
    stamp = f"{t}-{want}"
    assert p.check_keystamp(stamp, FILEID, KEY, t)
    assert p.check_keystamp(stamp.upper(), FILEID, KEY, t)  # case-insensitive hash
    assert p.check_keystamp(stamp, FILEID, KEY, t + 899)
    assert p.check_keystamp(stamp, FILEID, KEY, t - 899)
    assert not p.check_keystamp(stamp, FILEID, KEY, t + 900)  # strict < 900
    assert not p.check_keystamp(stamp, FILEID, KEY, t - 900)
    assert not p.check_keystamp(stamp[:-1], FILEID, KEY, t)  # prefix is not enough
    assert not p.check_keystamp(f"{t}-{want}0", FILEID, KEY, t)
    assert not p.check_keystamp(stamp, FILEID, "x" * 20, t)
    assert not p.check_keystamp(None, FILEID, KEY, t)
    assert not p.check_keystamp("garbage", FILEID, KEY, t)
    assert not p.check_keystamp(f"-{want}", FILEID, KEY, t)


def test_parse_additional() -> None:
    got = p.parse_additional(" keystamp = 1-abc ;fileindex=12;;a;x=;xres=org;noequals")
    assert got == {"keystamp": "1-abc", "fileindex": "12", "xres": "org"}
    assert p.parse_additional(p.format_additional({"a": "1", "bb": "2"})) == {"a": "1", "bb": "2"}


def test_servercmd_and_speedtest_keys() -> None:
    t = 1_700_000_000
    key = _sha1(f"hentai@home-servercmd-still_alive-x=1-1234-{t}-{KEY}")
    assert p.servercmd_key("still_alive", "x=1", 1234, t, KEY) == key
    assert p.check_servercmd("still_alive", "x=1", t, key, CREDS, t + 300)
    assert p.check_servercmd("still_alive", "x=1", t, key, CREDS, t - 300)
    assert not p.check_servercmd("still_alive", "x=1", t, key, CREDS, t + 301)
    assert not p.check_servercmd("still_alive", "x=2", t, key, CREDS, t)
    tkey = _sha1(f"hentai@home-speedtest-1000-{t}-1234-{KEY}")
    assert p.speedtest_key(1000, t, 1234, KEY) == tkey
    assert p.check_speedtest(1000, t, tkey, CREDS, t + 300)
    assert not p.check_speedtest(1000, t, tkey, CREDS, t + 301)
    assert not p.check_speedtest(1001, t, tkey, CREDS, t)


def test_rpc_urls_and_actkey() -> None:
    t = 1_700_000_123
    add = "1;org;" + FILEID
    key = _sha1(f"hentai@home-srfetch-{add}-1234-{t}-{KEY}")
    assert p.actkey("srfetch", add, 1234, t, KEY) == key
    url = p.rpc_url("10.0.0.1", "srfetch", add, CREDS, t)
    assert url == (
        "http://10.0.0.1/15/rpc?clientbuild=178&act=srfetch"
        f"&add=1%3Borg%3B{FILEID}&cid=1234&acttime={t}&actkey={key}"
    )
    assert p.rpc_url("h", "client_login", "", CREDS, t, port=8080).startswith(
        "http://h:8080/15/rpc?clientbuild=178&act=client_login&add=&cid=1234"
    )
    assert p.server_stat_url("h") == "http://h/15/rpc?clientbuild=178&act=server_stat"
    dl = p.dl_url("h", "5;org", CREDS, t)
    dkey = _sha1(f"hentai@home-fetchqueue-5;org-1234-{t}-{KEY}")
    assert (
        dl
        == f"http://h/15/dl?clientbuild=178&act=fetchqueue&add=5%3Borg&cid=1234&acttime={t}&actkey={dkey}"
    )
    assert p.rpc_host("::1", 81) == "[::1]:81"


def test_reply_parsing() -> None:
    r = p.parse_reply(b"OK\r\nserver_time=17\r\nRPC-Server-IP=1.2.3.4;5.6.7.8\r\nx=a=b\r\njunk\r\n")
    assert r.ok
    assert not r.is_null
    assert r.settings() == {"server_time": "17", "rpc_server_ip": "1.2.3.4;5.6.7.8", "x": "a=b"}
    assert p.parse_reply(b"").is_null
    assert p.parse_reply(b"TEMPORARILY_UNAVAILABLE").is_null
    fail = p.parse_reply("FAIL_CONNECT_TEST:12\n")
    assert not fail.ok
    assert fail.failed_with("FAIL_CONNECT_TEST")
    assert not fail.failed_with("FAIL_CID")
    assert p.parse_reply("KEY_EXPIRED\n").key_expired
    urls = p.parse_reply("OK\nhttp://a/1\n\nhttp://b/2\n").nonempty_lines()
    assert urls == ["http://a/1", "http://b/2"]
    assert p.parse_ip_list("1.2.3.4; ::ffff:5.6.7.8;;") == (["1.2.3.4", "5.6.7.8"], [])


def test_ip_list_drops_what_is_not_an_ip() -> None:
    valid, rejected = p.parse_ip_list(
        "::ffff:;10.0.0.1;rpc.example;2001:DB8::1;fe80::1%eth0;[::1;10.0.0.1;256.1.1.1"
    )
    assert valid == ["10.0.0.1", "2001:db8::1"]  # normalised, duplicates dropped
    assert rejected == ["::ffff:", "rpc.example", "fe80::1%eth0", "[::1", "256.1.1.1"]
    assert p.parse_ip_list(" ; ") == ([], [])


def test_clock_and_limits() -> None:
    clock = p.ServerClock()
    clock.sync(server_time=1000, now=900.7, rtt=0.0)
    assert clock.offset == 100
    assert clock.server_time(901.9) == 1001
    clock.sync(server_time=1000, now=1000, rtt=8.0)
    assert clock.server_time(1000) == 1002
    assert p.max_connections(0) == 20
    assert p.max_connections(1_000_000) == 120
    assert p.max_connections(10**10) == 500
    assert p.max_connections(10**10, override=7) == 7


def test_credentials_and_header() -> None:
    assert p.Credentials.parse_login_file("1234-abcdefghij0123456789\n") == CREDS
    assert CREDS.login_file_text() == f"1234-{KEY}"
    assert KEY not in repr(CREDS)
    for bad in ("", "x-" + KEY, "1234", "1234-short"):
        with pytest.raises(p.ProtocolError):
            p.Credentials.parse_login_file(bad)
    assert p.hath_request_header(CREDS, FILEID) == f"1234-{_sha1(KEY + FILEID)}"
