"""The fake control server itself speaks the RPC protocol (so the other tests can trust it)."""

from __future__ import annotations

import httpx
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
