"""The fake control server itself speaks the RPC protocol (so the other tests can trust it)."""

from __future__ import annotations

import httpx
import pytest
import trio
from cryptography.hazmat.primitives.serialization import pkcs12

from fakes.hath_control import FakeReply, FakeRequest, open_fake_control
from hathd.hath import protocol as p

CREDS = p.Credentials(4321, "ABCDEFGHIJ0123456789")


async def test_fake_rpc_roundtrip() -> None:
    with trio.fail_after(30):
        async with open_fake_control(CREDS) as fake, httpx.AsyncClient() as c:
            host = fake.rpc_host
            stat = p.parse_reply((await c.get(p.server_stat_url(host))).content)
            st = int(stat.settings()["server_time"])
            assert abs(st - fake.server_time()) <= 1
            login = await c.get(p.rpc_url(host, "client_login", "", CREDS, st))
            assert login.headers["content-length"] == str(len(login.content))
            assert p.parse_reply(login.content).settings()["rpc_server_ip"] == "127.0.0.1"
            stale = await c.get(p.rpc_url(host, "still_alive", "", CREDS, st - 10_000))
            assert p.parse_reply(stale.content).key_expired
            wrong = p.Credentials(4321, "x" * 20)
            assert p.parse_reply(
                (await c.get(p.rpc_url(host, "x", "", wrong, st))).content
            ).key_expired
            cert = await c.get(p.rpc_url(host, "get_cert", "", CREDS, st))
            key, leaf, _ = pkcs12.load_key_and_certificates(cert.content, CREDS.client_key.encode())
            assert key is not None
            assert leaf is not None
            assert leaf.serial_number == fake.leaf_serial()
            fake.script("client_start", "FAIL_CONNECT_TEST")
            r1 = p.parse_reply(
                (await c.get(p.rpc_url(host, "client_start", "", CREDS, st))).content
            )
            r2 = p.parse_reply(
                (await c.get(p.rpc_url(host, "client_start", "", CREDS, st))).content
            )
            assert r1.failed_with("FAIL_CONNECT_TEST")
            assert r2.ok
            fid = fake.add_file(b"hello world")
            add = p.srfetch_add("1", "org", fid)
            urls = p.parse_reply((await c.get(p.rpc_url(host, "srfetch", add, CREDS, st))).content)
            [url] = urls.nonempty_lines()
            img = await c.get(url, headers={"Hath-Request": "x"})
            assert img.content == b"hello world"
            assert fake.upstream_hits[fid] == 1
            assert fake.hath_request_headers == ["x"]

            async def dl(req: FakeRequest) -> FakeReply:
                return FakeReply.text("NO_PENDING_DOWNLOADS")

            fake.add_route("/15/dl", dl)
            q = await c.get(p.dl_url(host, "", CREDS, st))
            assert q.text == "NO_PENDING_DOWNLOADS\n"
            assert [a for a, _ in fake.calls] == [
                "server_stat",
                "client_login",
                "still_alive",
                "x",
                "get_cert",
                "client_start",
                "client_start",
                "srfetch",
            ]


async def test_fake_upstream_ranges_and_truncation() -> None:
    data = bytes(range(256)) * 100  # 25 600 bytes
    with trio.fail_after(30):
        async with open_fake_control(CREDS) as fake, httpx.AsyncClient() as c:
            fid = fake.add_file(data, chunk=1000)
            url = f"{fake.url}/image/{fid}"
            for header, first, last in [
                ("bytes=100-", 100, len(data) - 1),
                ("bytes=100-199", 100, 199),
                ("bytes=-50", len(data) - 50, len(data) - 1),
                ("bytes=25000-99999", 25000, len(data) - 1),
            ]:
                r = await c.get(url, headers={"Range": header})
                assert r.status_code == 206
                assert r.headers["content-range"] == f"bytes {first}-{last}/{len(data)}"
                assert r.headers["content-length"] == str(last - first + 1)
                assert r.content == data[first : last + 1]
            r = await c.get(url, headers={"Range": f"bytes={len(data)}-"})
            assert r.status_code == 416
            assert r.headers["content-range"] == f"bytes */{len(data)}"
            for ignored in ("bytes=1-2,5-6", "items=1-2", "bytes=9-3", "bytes=x-"):
                r = await c.get(url, headers={"Range": ignored})
                assert (r.status_code, r.content) == (200, data)
            assert fake.upstream_log[0] == (fid, "bytes=100-", 206)
            assert fake.upstream_log[4] == (fid, f"bytes={len(data)}-", 416)

            cut = fake.add_file(data[::-1], truncate_after=3000, truncations=2)
            got = bytearray()

            async def read_all() -> None:
                async with c.stream("GET", f"{fake.url}/image/{cut}") as r:
                    assert r.headers["content-length"] == str(len(data))
                    async for piece in r.aiter_bytes():
                        got.extend(piece)

            with pytest.raises(httpx.RemoteProtocolError):
                await read_all()
            assert bytes(got) == data[::-1][:3000]
            with pytest.raises(httpx.RemoteProtocolError):  # the second one is cut too
                await c.get(f"{fake.url}/image/{cut}", headers={"Range": "bytes=3000-"})
            r = await c.get(f"{fake.url}/image/{cut}", headers={"Range": "bytes=3000-"})
            assert (r.status_code, r.content) == (206, data[::-1][3000:])

            plain = fake.add_file(data[1:], ranges=False)
            r = await c.get(f"{fake.url}/image/{plain}", headers={"Range": "bytes=10-"})
            assert (r.status_code, r.content) == (200, data[1:])
