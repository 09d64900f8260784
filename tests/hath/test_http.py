"""The image server's bytes on the wire: status codes, header order, ETag, Range, servercmd."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import trio

from fakes.hath_control import FakeControlServer, open_fake_control
from hath.helpers import cached_file, server_port
from hathd.hath import protocol as p
from hathd.hath.node import HathNode

from .helpers import CREDS, base_url, client, raw_request, run_node, split_response

DATE = r"Date: [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT"
SERVER = "Server: Genetic Lifeform and Distributed Open Server 1.6.5"


async def _get(fake: FakeControlServer, node: HathNode, line: str, *headers: str) -> bytes:
    req = "\r\n".join([line, "Host: x", *headers, "", ""]).encode("latin-1")
    return await raw_request(fake, server_port(node), req)


async def test_hit_headers_are_byte_exact(tmp_path: Path) -> None:
    data = os.urandom(12345)
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            fid = await cached_file(node, tmp_path, data)
            raw = await _get(fake, node, f"GET {fake.keystamped_path(fid)} HTTP/1.1")
            status, headers, body = split_response(raw)
            assert status == "HTTP/1.1 200 OK"
            assert headers[0] == f'ETag: "{fid[:8]}"'
            assert headers[1] == "Accept-Ranges: bytes"
            assert headers[2] == 'Content-Disposition: inline; filename="x.jpg"'
            assert re.fullmatch(DATE, headers[3])
            assert headers[4:] == [
                SERVER,
                "Connection: close",
                "Content-Type: image/jpeg",
                "Cache-Control: public, max-age=31536000, immutable",
                "Content-Length: 12345",
            ]
            assert body == data
            head = await _get(fake, node, f"HEAD {fake.keystamped_path(fid)} HTTP/1.1")
            status, headers, body = split_response(head)
            assert status == "HTTP/1.1 200 OK"
            assert "Content-Length: 12345" in headers
            assert body == b""


async def test_error_responses_follow_the_reference(tmp_path: Path) -> None:
    data = os.urandom(1000)
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            fid = await cached_file(node, tmp_path, data)
            now = fake.server_time()
            stale = fake.keystamped_path(fid, when=now - 900)
            almost = fake.keystamped_path(fid, when=now - 890)
            bogus = f"/h/{fid}/keystamp={now}-0000000000;fileindex=1;xres=org/x.jpg"
            dots = fake.keystamped_path("..").replace("fileindex=1", "fileindex=1")
            badidx = fake.keystamped_path(fid).replace("fileindex=1", "fileindex=1a")
            badxres = fake.keystamped_path(fid).replace("xres=org", "xres=big")
            cases = [
                (b"HELLO\r\n\r\n", 400),
                (b"GET /robots.txt\r\n\r\n", 400),
                (b"GET  /robots.txt HTTP/1.1\r\n\r\n", 400),
                (b"POST /robots.txt HTTP/1.1\r\n\r\n", 405),
                (b"GET /robots.txt FTP/1.0\r\n\r\n", 405),
                (b"GET /" + b"a" * 1200 + b" HTTP/1.1\r\n\r\n", 400),
                (b"GET /robots.txt HTTP/1.1\r\n" + b"X: y\r\n" * 120 + b"\r\n", 400),
                (f"GET {stale} HTTP/1.1\r\n\r\n".encode(), 403),
                (f"GET {bogus} HTTP/1.1\r\n\r\n".encode(), 403),
                (f"GET /h/{fid} HTTP/1.1\r\n\r\n".encode(), 400),
                (f"GET {dots} HTTP/1.1\r\n\r\n".encode(), 404),
                (f"GET {badidx} HTTP/1.1\r\n\r\n".encode(), 404),
                (f"GET {badxres} HTTP/1.1\r\n\r\n".encode(), 404),
                (b"GET /../../etc/passwd HTTP/1.1\r\n\r\n", 404),
                (b"GET /nothing HTTP/1.1\r\n\r\n", 404),
                (b"GET /servercmd/still_alive HTTP/1.1\r\n\r\n", 403),
                (b"GET /t/100/1/2 HTTP/1.1\r\n\r\n", 403),
            ]
            for request, code in cases:
                raw = await raw_request(fake, server_port(node), request)
                status, headers, body = split_response(raw)
                assert status.startswith(f"HTTP/1.1 {code} "), (request[:60], status)
                assert body == f"An error has occurred. ({code})".encode()
                assert "Content-Type: text/html; charset=ISO-8859-1" in headers
                assert f"Content-Length: {len(body)}" in headers
                if code == 405:
                    assert headers[0] == "Allow: GET,HEAD"
                if code == 403:
                    assert status == "HTTP/1.1 403 Permission Denied"
            ok = await _get(fake, node, f"GET {almost} HTTP/1.1")
            assert split_response(ok)[2] == data
            absolute = await _get(fake, node, f"GET http://example.org{almost} HTTP/1.0")
            assert split_response(absolute)[2] == data
            encoded = await _get(fake, node, f"GET {almost.replace('=', '%3d')} HTTP/1.1")
            assert split_response(encoded)[2] == data


async def test_etag_and_single_range(tmp_path: Path) -> None:
    data = os.urandom(5000)
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            fid = await cached_file(node, tmp_path, data)
            url = base_url(node) + fake.keystamped_path(fid)
            etag = f'"{fid[:8]}"'
            async with client(fake) as c:
                r = await c.get(url, headers={"If-None-Match": etag})
                assert r.status_code == 304
                assert r.content == b""
                r = await c.get(url, headers={"Range": "bytes=100-199"})
                assert r.status_code == 206
                assert r.content == data[100:200]
                assert r.headers["content-range"] == "bytes 100-199/5000"
                r = await c.get(url, headers={"Range": "bytes=-10"})
                assert r.content == data[-10:]
                r = await c.get(url, headers={"Range": "bytes=4990-"})
                assert r.content == data[4990:]
                r = await c.get(url, headers={"Range": "bytes=0-1,5-6"})
                assert r.status_code == 200
                assert r.content == data
                r = await c.get(url, headers={"Range": "bytes=9000-"})
                assert r.status_code == 416
                assert r.headers["content-range"] == "bytes */5000"
                r = await c.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
                assert r.status_code == 200
                assert r.content == data


async def test_servercmd_speedtest_and_static_routes(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            base = base_url(node)
            r = await fake.servercmd(base, "still_alive")
            assert r.status_code == 200
            assert r.content == b"I feel FANTASTIC and I'm still alive"
            r = await fake.servercmd(base, "speed_test", "testsize=4321")
            assert r.status_code == 200
            assert len(r.content) == 4321
            assert r.headers["content-type"] == "text/html; charset=iso-8859-1"
            r = await fake.servercmd(base, "no_such_thing")
            assert r.content == b"INVALID_COMMAND"
            async with client(fake) as c:
                bad = fake.servercmd_path("still_alive").rsplit("/", 1)[0] + "/" + "0" * 40
                assert (await c.get(base + bad)).status_code == 403
                old = fake.servercmd_path("still_alive", when=fake.server_time() - 301)
                assert (await c.get(base + old)).status_code == 403
                r = await c.get(base + fake.speedtest_path(70000))
                assert r.status_code == 200
                assert len(r.content) == 70000
                old_t = fake.speedtest_path(10, when=fake.server_time() - 400)
                assert (await c.get(base + old_t)).status_code == 403
                r = await c.get(base + "/favicon.ico")
                assert r.status_code == 301
                assert r.headers["location"] == "https://e-hentai.org/favicon.ico"
                assert "content-length" not in r.headers
            node.policy.rpc_ips = {"192.0.2.1"}  # not us: the IP allow-list refuses
            r = await fake.servercmd(base, "still_alive")
            assert r.status_code == 403


async def test_threaded_proxy_test_against_ourselves(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            t = fake.server_time()
            key = p.speedtest_key(20000, t, CREDS.client_id, CREDS.client_key)
            add = (
                f"hostname=127.0.0.1;protocol=https;port={server_port(node)};testsize=20000;"
                f"testcount=3;testtime={t};testkey={key}"
            )
            r = await fake.servercmd(base_url(node), "threaded_proxy_test", add)
            assert r.status_code == 200
            assert re.fullmatch(rb"OK:3-\d+", r.content)
            bad = add.replace(f"testkey={key}", "testkey=nope")
            r = await fake.servercmd(base_url(node), "threaded_proxy_test", bad)
            assert r.content.startswith(b"OK:0-")


async def test_flood_control_and_connection_cap(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with (
            open_fake_control(CREDS) as fake,
            run_node(tmp_path, fake, local_exempt=False) as node,
        ):
            assert node.server is not None
            node.policy.rpc_ips = {"192.0.2.1"}  # 127.0.0.1 is now an ordinary client
            # 12 plain TCP connections in a burst: flood control counts at accept time
            streams = []
            for _ in range(12):
                try:
                    streams.append(await trio.open_tcp_stream("127.0.0.1", server_port(node)))
                except OSError:  # the RST of a refused connection may beat the connect
                    pass
            stats = node.server.statistics()
            while stats.accepted + stats.refused < 12:
                await trio.sleep(0.01)
                stats = node.server.statistics()
            assert (stats.accepted, stats.refused) == (10, 2)
            assert stats.flood_blocked == 2
            for stream in streams:
                await stream.aclose()
            with pytest.raises((trio.BrokenResourceError, OSError)):  # still blocked for 60 s
                await raw_request(fake, server_port(node), b"GET /robots.txt HTTP/1.1\r\n\r\n")
            node.server.flood = type(node.server.flood)()
            node.policy.max_connections = 1
            held = await trio.open_tcp_stream(
                "127.0.0.1", server_port(node)
            )  # one open, no request
            async with held:
                while node.server.open < 1:
                    await trio.sleep(0.01)
                with pytest.raises((trio.BrokenResourceError, OSError)):
                    await raw_request(fake, server_port(node), b"GET /robots.txt HTTP/1.1\r\n\r\n")
            assert node.server.statistics().overload_notices == 1
            while fake.count("overload") == 0:
                await trio.sleep(0.01)


@pytest.mark.parametrize("exempt", [True, False])
async def test_throttle_meters_only_non_local_traffic(tmp_path: Path, exempt: bool) -> None:
    data = os.urandom(100_000)
    with trio.fail_after(60):
        async with (
            open_fake_control(CREDS) as fake,
            run_node(tmp_path, fake, local_exempt=exempt, throttle_bytes=50_000_000) as node,
        ):
            assert node.throttle.rate == 50_000_000
            assert node.policy.max_connections == 20 + 480
            node.policy.rpc_ips = {"192.0.2.1"}
            fid = await cached_file(node, tmp_path, data)
            async with client(fake) as c:
                r = await c.get(base_url(node) + fake.keystamped_path(fid))
            assert r.content == data
            if exempt:
                assert node.throttle.sent == 0
            else:
                assert node.throttle.sent > len(data)  # body and header bytes went through it


async def test_large_file_streams_and_is_verified_inline(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # above the one-read limit: streamed in pieces
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            fid = await cached_file(node, tmp_path, data)
            url = base_url(node) + fake.keystamped_path(fid)
            assert node.cache is not None
            path = node.cache.path_of(p.FileId.parse(fid))
            async with client(fake) as c:
                r = await c.get(url, headers={"Range": f"bytes={len(data) - 5}-"})
                assert r.content == data[-5:]
                node.cache.lru = type(node.cache.lru)()
                node.cache._verify_cooldown_until = 0
                assert (await c.get(url)).content == data  # verified while sent: intact
                assert path.exists()
                path.write_bytes(bytes(len(data)))  # same size, wrong bytes
                node.cache.lru = type(node.cache.lru)()
                node.cache._verify_cooldown_until = 0
                r = await c.get(url)
                assert len(r.content) == len(data)
                while node.cache.statistics().corrupt_deleted == 0:  # deleted after sending
                    await trio.sleep(0.02)
            assert not path.exists()
            assert node.cache.count == 0


async def test_plaintext_and_silent_clients_do_not_disturb_the_server(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with (
            open_fake_control(CREDS) as fake,
            run_node(tmp_path, fake, request_timeout=0.5) as node,
        ):
            plain = await trio.open_tcp_stream("127.0.0.1", server_port(node))
            async with plain:
                await plain.send_all(b"GET /robots.txt HTTP/1.1\r\n\r\n")  # no TLS at all
                try:
                    while await plain.receive_some(4096):
                        pass  # the TLS alert, then the close
                except trio.BrokenResourceError:
                    pass
            silent = await trio.open_tcp_stream("127.0.0.1", server_port(node))
            async with silent:
                try:
                    assert await silent.receive_some(4096) == b""  # closed after the timeout
                except trio.BrokenResourceError:
                    pass
            raw = await raw_request(fake, server_port(node), b"GET /robots.txt HTTP/1.1\r\n\r\n")
            assert split_response(raw)[0] == "HTTP/1.1 200 OK"
            assert node.server is not None
            assert node.server.open == 0
