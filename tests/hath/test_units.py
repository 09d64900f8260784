"""Sans-IO pieces: request parsing, admission limits, throttle, TLS decoding, RPC failover."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import trio
import trustme

from fakes.hath_control import make_pkcs12, open_fake_control
from hathd.hath import protocol as p
from hathd.hath import wire
from hathd.hath.limits import FloodControl, OverloadNotice, UploadThrottle, is_local
from hathd.hath.rpc import RpcClient, RpcUnavailable
from hathd.hath.tls import CertHolder, CertInfo, decode_pkcs12, expires_soon

from .helpers import CREDS


def test_parse_head_rules() -> None:
    head = wire.parse_head(b"get http://h:1/h/x%3dy/z HTTP/1.1\r\nRange: bytes=1-2\r\n")
    assert head.method == "GET"
    assert head.path == "/h/x=y/z"
    assert head.headers == {"range": "bytes=1-2"}
    assert wire.parse_head(b"HEAD / HTTP/1.0").head_only
    assert wire.parse_head(b"GET /a%3Db HTTP/1.1").path == "/a%3Db"  # only lower-case %3d
    for raw, status in [
        (b"", 400),
        (b"GET /", 400),
        (b"GET / HTTP/1.1 extra", 400),
        (b"PUT / HTTP/1.1", 405),
        (b"GET / SPDY/3", 405),
    ]:
        with pytest.raises(wire.HttpError) as info:
            wire.parse_head(raw)
        assert info.value.status == status
    assert wire.find_head_end(b"GET / HTTP/1.1\r\n\r\nrest") == 18
    assert wire.find_head_end(b"GET / HTTP/1.1\n\n") == 16
    assert wire.find_head_end(b"GET / HTTP/1.1\r\n") == -1


def test_response_head_order_and_empty_body() -> None:
    head = wire.response_head(
        301, content_type=wire.TEXT_TYPE, length=0, now=0, extra=(("Location", "x"),)
    )
    assert head == (
        b"HTTP/1.1 301 Moved Permanently\r\nLocation: x\r\n"
        b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
        b"Server: Genetic Lifeform and Distributed Open Server 1.6.5\r\n"
        b"Connection: close\r\nContent-Type: text/html; charset=ISO-8859-1\r\n\r\n"
    )
    assert wire.response_head(599, content_type="x", length=1, now=0).startswith(
        b"HTTP/1.1 599 Internal Server Error\r\n"
    )
    assert wire.error_body(404) == b"An error has occurred. (404)"


def test_range_and_etag() -> None:
    assert wire.parse_range(None, 10) is None
    assert wire.parse_range("bytes=2-4", 10) == (2, 4)
    assert wire.parse_range("bytes=2-400", 10) == (2, 9)
    assert wire.parse_range("bytes=-3", 10) == (7, 9)
    assert wire.parse_range("bytes=-30", 10) == (0, 9)
    assert wire.parse_range("bytes=4-2", 10) is None
    assert wire.parse_range("items=1-2", 10) is None
    assert wire.parse_range("bytes=a-b", 10) is None
    with pytest.raises(wire.RangeNotSatisfiable):
        wire.parse_range("bytes=10-", 10)
    with pytest.raises(wire.RangeNotSatisfiable):
        wire.parse_range("bytes=-0", 10)
    assert wire.etag_for("abcdef0123") == '"abcdef01"'
    assert wire.etag_matches('"x", W/"abcdef01"', '"abcdef01"')
    assert wire.etag_matches("*", '"q"')
    assert not wire.etag_matches('"y"', '"q"')
    assert not wire.etag_matches(None, '"q"')


def test_flood_control() -> None:
    flood = FloodControl()
    assert all(flood.admit("1.2.3.4", 100.0) for _ in range(10))
    assert not flood.admit("1.2.3.4", 100.5)  # 11th within a second
    assert not flood.admit("1.2.3.4", 159.0)  # blocked for 60 s
    assert flood.admit("5.6.7.8", 100.5)  # others unaffected
    assert flood.admit("1.2.3.4", 161.0)  # block over, count decayed
    flood.prune(1000.0)
    assert len(flood) == 0


def test_locality_overload_and_throttle() -> None:
    assert is_local("127.0.0.1")
    assert is_local("192.168.1.9")
    assert is_local("::ffff:10.1.2.3")
    assert is_local("fd00::1")
    assert is_local("203.0.113.5", own_host="203.0.113.5")
    assert not is_local("203.0.113.5")
    assert not is_local("nonsense")
    notice = OverloadNotice()
    assert not notice.should_notify(80, 100, 0.0)
    assert notice.should_notify(81, 100, 0.0)
    assert not notice.should_notify(90, 100, 29.0)
    assert notice.should_notify(90, 100, 30.0)
    bucket = UploadThrottle(100_000)  # 100 kB/s, 5 kB burst
    assert bucket.delay(5000, 0.0) == 0.0
    assert bucket.delay(10_000, 0.0) == pytest.approx(0.1)
    total = sum(bucket.delay(10_000, 0.1 + i * 0.1) for i in range(10))
    assert total == pytest.approx(1.0, abs=0.05)  # 100 kB more at 100 kB/s ≈ 1 s of waiting
    assert UploadThrottle(0).delay(10**9, 0.0) == 0.0


def test_pkcs12_decoding_and_expiry(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    blob = make_pkcs12(leaf, CREDS.client_key)
    pem, info = decode_pkcs12(blob, CREDS.client_key)
    assert b"PRIVATE KEY" in pem
    assert b"CERTIFICATE" in pem
    with pytest.raises(p.ProtocolError):
        decode_pkcs12(blob, "wrong-password-00000")
    with pytest.raises(p.ProtocolError):
        decode_pkcs12(b"not pkcs12", CREDS.client_key)
    soon = CertInfo(1, "x", dt.datetime.now(dt.UTC) + dt.timedelta(hours=23))
    assert expires_soon(soon)
    assert not expires_soon(info)
    holder = CertHolder(tmp_path)
    holder.install(blob, CREDS.client_key)
    holder.install(make_pkcs12(ca.issue_cert("127.0.0.1"), CREDS.client_key), CREDS.client_key)
    assert holder.swaps == 1
    assert [x.name for x in tmp_path.iterdir()] == ["hathcert.p12"]


async def test_rpc_failover_to_a_live_host() -> None:
    with trio.fail_after(30):
        async with open_fake_control(CREDS) as fake:
            rpc = RpcClient(CREDS, bootstrap=fake.rpc_host, timeout=10)
            try:
                await rpc.server_stat()
                rpc.apply_settings(
                    {"rpc_server_ip": "127.0.0.2;127.0.0.1", "rpc_server_port": str(fake.port)}
                )
                rpc.current = "127.0.0.2"  # nothing listens there: refused, then failover
                reply = await rpc.call("client_settings")
                assert reply.ok
                assert rpc.failed == "127.0.0.2"
                assert rpc.current == "127.0.0.1"
                fake.script("still_alive", "TEMPORARILY_UNAVAILABLE", "OK")
                assert (await rpc.call("still_alive")).ok
                rpc.apply_settings({"rpc_server_ip": "127.0.0.3"})
                with pytest.raises(RpcUnavailable):
                    await rpc.call("still_alive")
            finally:
                await rpc.aclose()


async def test_rpc_host_that_makes_no_url_is_unavailable_not_a_crash() -> None:
    # httpx.InvalidURL is no httpx.HTTPError: it must still end as RpcUnavailable.
    with trio.fail_after(30):
        async with open_fake_control(CREDS) as fake:
            bad = RpcClient(CREDS, bootstrap="[::1", timeout=10)
            try:
                with pytest.raises(RpcUnavailable, match="no RPC host answered"):
                    await bad.server_stat()
            finally:
                await bad.aclose()
            rpc = RpcClient(CREDS, bootstrap=fake.rpc_host, timeout=10)
            try:
                await rpc.server_stat()
                rpc.apply_settings(
                    {"rpc_server_ip": "127.0.0.1", "rpc_server_port": str(fake.port)}
                )
                rpc.ips.insert(0, "[::1")  # a host that got past parsing somehow
                rpc.current = "[::1"
                assert (await rpc.call("client_settings")).ok  # failed over to 127.0.0.1
                assert rpc.failed == "[::1"
            finally:
                await rpc.aclose()
            assert rpc.closed


async def test_rpc_reply_without_content_length_is_a_failure() -> None:
    from collections.abc import AsyncIterator

    from fakes.hath_control import FakeReply, FakeRequest

    async def chunked(req: FakeRequest) -> FakeReply:
        async def body() -> AsyncIterator[bytes]:
            yield b"OK\n"

        return FakeReply(200, chunks=body, content_length=None)

    with trio.fail_after(30):
        async with open_fake_control(CREDS) as fake:
            fake.add_action("still_alive", chunked)
            rpc = RpcClient(CREDS, bootstrap=fake.rpc_host, timeout=10)
            try:
                await rpc.server_stat()
                with pytest.raises(RpcUnavailable, match="Content-Length"):
                    await rpc.call("still_alive")
                assert fake.count("still_alive") == 3  # three tries, as the reference
            finally:
                await rpc.aclose()
