"""The node against the fake control server, over real TLS sockets on 127.0.0.1."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
import trio

from fakes.hath_control import FakeReply, FakeRequest, make_pkcs12, open_fake_control
from hathd.hath import protocol as p
from hathd.store import open_store

from .helpers import (
    CREDS,
    base_url,
    client,
    context_serial,
    new_node,
    peer_cert_serial,
    run_node,
    sha1,
    weak_pkcs12,
)


async def test_lifecycle_from_login_to_stop(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            fake.skew = 5000  # the fake's clock runs ahead: the node must sync to it
            async with run_node(tmp_path, fake) as node:
                assert [a for a, _ in fake.calls] == [
                    "server_stat",
                    "client_login",
                    "get_cert",
                    "client_start",
                    "client_settings",
                    "get_blacklist",
                ]
                assert fake.calls[-1] == ("get_blacklist", "259200")
                assert abs(node.clock.offset - 5000) <= 2
                assert all(r.verified for r in fake.requests if r.act not in ("server_stat", ""))
                assert node.policy.startup_only is False
                assert node.policy.rpc_ips == {"127.0.0.1"}
                assert node.statistics().cert_serial == format(fake.leaf_serial(), "x")
                assert (tmp_path / "data" / "hathcert.p12").stat().st_mode & 0o777 == 0o600
                async with client(fake) as c:
                    r = await c.get(base_url(node) + "/robots.txt")
                assert r.status_code == 200
                assert r.content == b"User-agent: *\nDisallow: /"
                assert r.headers["content-type"] == "text/plain; charset=ISO-8859-1"
            assert fake.calls[-1] == ("client_stop", "")
            assert node.state == "stopped"


async def test_miss_is_proxied_then_served_as_hit(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            fid = fake.add_file(data, typ="png")
            url = base_url(node) + fake.keystamped_path(fid, name="page1.png")
            async with client(fake) as c:
                first = await c.get(url)
                second = await c.get(url)
            for r in (first, second):
                assert r.status_code == 200
                assert r.content == data
                assert r.headers["content-type"] == "image/png"
                assert r.headers["content-length"] == str(len(data))
                assert r.headers["etag"] == f'"{fid[:8]}"'
            assert fake.upstream_hits[fid] == 1
            assert fake.count("srfetch") == 1
            assert fake.calls[-1] == ("srfetch", f"1;org;{fid}")
            assert fake.hath_request_headers == [p.hath_request_header(CREDS, fid)]
            assert node.cache is not None
            cached = node.cache.path_of(p.FileId.parse(fid))
            assert cached.read_bytes() == data
            assert node.cache.count == 1
            assert node.cache.total_bytes == len(data)
            assert list((tmp_path / "cache" / ".tmp").iterdir()) == []
            stats = node.statistics().server
            assert stats["hits"] == 1
            assert stats["misses"] == 1


async def test_fifty_concurrent_requests_make_one_upstream_fetch(tmp_path: Path) -> None:
    data = os.urandom(1_500_000)
    gate = trio.Event()
    got: list[bytes] = []
    with trio.fail_after(120):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            fid = fake.add_file(data, gate=gate, gate_after=200_000)
            url = base_url(node) + fake.keystamped_path(fid)
            limits = httpx.Limits(max_connections=60)
            async with client(fake, limits=limits) as c:

                async def fetch() -> None:
                    r = await c.get(url)
                    assert r.status_code == 200
                    got.append(r.content)

                async with trio.open_nursery() as n:
                    for _ in range(50):
                        n.start_soon(fetch)
                    assert node.proxy is not None
                    while node.proxy.statistics().joined < 49:
                        await trio.sleep(0.05)
                    gate.set()
            assert len(got) == 50
            assert all(body == data for body in got)
            assert fake.upstream_hits[fid] == 1
            assert fake.count("srfetch") == 1
            proxy = node.proxy.statistics()
            assert proxy.flights == 1
            assert proxy.imported == 1


async def test_corrupt_upstream_never_enters_the_cache(tmp_path: Path) -> None:
    data = os.urandom(200_000)
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            fid = fake.add_file(data, corrupt=True)
            url = base_url(node) + fake.keystamped_path(fid)
            async with client(fake) as c:
                with pytest.raises(httpx.HTTPError):
                    # the last byte is held back until the SHA-1 matches: a short read
                    await c.get(url)
            assert node.cache is not None
            assert node.cache.stat_hit(p.FileId.parse(fid)) is None
            assert node.cache.count == 0
            while list((tmp_path / "cache" / ".tmp").iterdir()):  # the temp file goes away
                await trio.sleep(0.02)
            assert node.proxy is not None
            assert node.proxy.statistics().failed == 1


async def test_miss_streams_the_first_bytes_before_the_upstream_sends_the_rest(
    tmp_path: Path,
) -> None:
    # the head and the upstream's first chunk reach the client while the upstream holds back
    # the rest of the body (proxy.py: the chunk is handed over from memory as it arrives)
    data = os.urandom(400_000)
    gate = trio.Event()
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            fid = fake.add_file(data, gate=gate, gate_after=16_384, chunk=16_384)
            async with (
                client(fake) as c,
                c.stream("GET", base_url(node) + fake.keystamped_path(fid)) as r,
            ):
                assert r.status_code == 200
                assert r.headers["content-length"] == str(len(data))
                body = bytearray()
                async for piece in r.aiter_raw():
                    body += piece
                    if len(body) >= 16_384 and not gate.is_set():
                        assert bytes(body[:16_384]) == data[:16_384]
                        gate.set()  # only now may the upstream go on
                assert gate.is_set()
            assert bytes(body) == data


async def test_upstream_failing_before_its_first_byte_gets_a_clean_502(tmp_path: Path) -> None:
    # every source accepts (200, right Content-Length) and drops before a byte: the head waits
    # for the first bytes, so the client gets an error reply, not a cut 200
    data = os.urandom(50_000)
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            fid = fake.add_file(data, truncate_after=0, truncations=10)
            async with client(fake) as c:
                r = await c.get(base_url(node) + fake.keystamped_path(fid))
            assert r.status_code == 502
            assert r.content == b"An error has occurred. (502)"
            assert node.proxy is not None
            assert node.proxy.statistics().failed == 1
            assert node.cache is not None
            assert node.cache.count == 0


async def test_truncated_upstream_resumes_with_range(tmp_path: Path) -> None:
    # proxy.py: after a dropped connection the next try asks for the rest only
    # (Range: bytes=<received>-) and appends the 206 body; nothing is fetched twice.
    data = os.urandom(300_000)
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            fid = fake.add_file(data, truncate_after=100_000)
            async with client(fake) as c:
                r = await c.get(base_url(node) + fake.keystamped_path(fid))
            assert r.status_code == 200
            assert r.content == data
            assert fake.upstream_log == [(fid, None, 200), (fid, "bytes=100000-", 206)]
            assert node.proxy is not None
            stats = node.proxy.statistics()
            assert (stats.upstream_requests, stats.imported, stats.failed) == (2, 1, 0)
            assert stats.bytes_received == len(data)
            assert node.cache is not None
            assert node.cache.path_of(p.FileId.parse(fid)).read_bytes() == data


async def test_truncated_upstream_without_range_support_skips_what_it_has(
    tmp_path: Path,
) -> None:
    # A source that ignores Range answers 200 with the whole body: the bytes already written
    # are skipped, not appended twice.
    data = os.urandom(200_000)
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            fid = fake.add_file(data, truncate_after=70_000, ranges=False)
            async with client(fake) as c:
                r = await c.get(base_url(node) + fake.keystamped_path(fid))
            assert r.content == data
            assert fake.upstream_log == [(fid, None, 200), (fid, "bytes=70000-", 200)]
            assert node.proxy is not None
            assert node.proxy.statistics().bytes_received == len(data)
            assert node.cache is not None
            assert node.cache.stat_hit(p.FileId.parse(fid)) is not None


async def test_srfetch_skips_malformed_urls(tmp_path: Path) -> None:
    # §3.4: each srfetch URL is tried in order; one that httpx cannot even parse is a
    # rejected source like any other, not the end of the flight.
    data = os.urandom(10_000)
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            fid = fake.add_file(data)
            fake.srfetch_extra = ["http://[::1", "http://256.1.1.1/x"]
            async with client(fake) as c:
                r = await c.get(base_url(node) + fake.keystamped_path(fid))
            assert r.status_code == 200
            assert r.content == data
            assert fake.upstream_hits[fid] == 1
            assert node.cache is not None
            assert node.cache.stat_hit(p.FileId.parse(fid)) is not None


async def test_malformed_rpc_server_ip_entries_are_dropped(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            fake.settings["rpc_server_ip"] = "::ffff:;not-an-ip;127.0.0.1;[::1"
            async with run_node(tmp_path / "a", fake) as node:
                assert node.rpc.ips == ["127.0.0.1"]
                assert node.policy.rpc_ips == {"127.0.0.1"}
                await node.refresh_settings()
                assert fake.calls[-1] == ("client_settings", "")
            # Nothing usable: the RPC client stays on the bootstrap host, whose IP is trusted.
            fake.settings["rpc_server_ip"] = "::ffff:"
            async with run_node(tmp_path / "b", fake) as node:
                assert node.rpc.ips == []
                assert node.policy.rpc_ips == {"127.0.0.1"}
                assert node.state == "running"


async def test_unusable_certificate_on_refresh_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from hathd.hath import node as node_mod

    monkeypatch.setattr(node_mod, "CERT_RETRY", 0.1)
    weak = weak_pkcs12(CREDS.client_key)
    serve_weak = True
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:

            async def get_cert(req: FakeRequest) -> FakeReply:
                blob = weak if serve_weak else make_pkcs12(fake.leaf, CREDS.client_key)
                return FakeReply(200, blob, [(b"content-type", b"application/x-pkcs12")])

            fake.add_action("get_cert", get_cert)
            port = node.server.port if node.server else 0
            old = fake.leaf_serial()
            old_context = node.certs.context
            p12 = (tmp_path / "data" / "hathcert.p12").read_bytes()
            r = await fake.servercmd(base_url(node), "refresh_certs")
            assert r.status_code == 200
            while fake.count("get_cert") < 3:  # start-up, then two failed refresh tries
                await trio.sleep(0.02)
            # No crash: a clear error, still serving with the old certificate, the saved one
            # untouched.
            assert "get_cert PKCS#12 does not load: [SSL: EE_KEY_TOO_SMALL]" in caplog.text
            assert node.state == "running"
            assert await peer_cert_serial(fake, port) == old
            assert node.certs.swaps == 0
            assert (tmp_path / "data" / "hathcert.p12").read_bytes() == p12
            fake.rotate_cert()
            serve_weak = False
            while node.certs.swaps == 0:
                await trio.sleep(0.02)
            assert await peer_cert_serial(fake, port) == fake.leaf_serial() != old
            # The new certificate came in a new context, swapped in; the old context object
            # (which connections in flight use) was never changed.
            assert node.certs.context is not old_context
            assert await context_serial(fake, old_context) == old


@pytest.mark.parametrize(
    ("setup", "status"),
    [
        ("missing", 404),  # srfetch returns no URL
        ("bad_length", 502),  # upstream has no Content-Length
        ("upstream_500", 502),
    ],
)
async def test_upstream_failures_give_reference_codes(
    tmp_path: Path, setup: str, status: int
) -> None:
    data = os.urandom(1000)
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            if setup == "missing":
                fid = f"{sha1(data)}-{len(data)}-1-1-jpg"
            elif setup == "bad_length":
                fid = fake.add_file(data, omit_length=True)
            else:
                fid = fake.add_file(data, status=500)
            async with client(fake) as c:
                r = await c.get(base_url(node) + fake.keystamped_path(fid))
            assert r.status_code == status
            assert r.content == f"An error has occurred. ({status})".encode()
            assert node.cache is not None
            assert node.cache.count == 0


async def test_refresh_certs_swaps_while_a_download_is_in_flight(tmp_path: Path) -> None:
    data = os.urandom(800_000)
    gate = trio.Event()
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            port = node.server.port if node.server else 0
            old = fake.leaf_serial()
            assert await peer_cert_serial(fake, port) == old
            fid = fake.add_file(data, gate=gate, gate_after=100_000)
            result: list[httpx.Response] = []
            async with client(fake) as c, trio.open_nursery() as n:

                async def download() -> None:
                    result.append(await c.get(base_url(node) + fake.keystamped_path(fid)))

                n.start_soon(download)
                assert node.proxy is not None
                while node.proxy.statistics().flights == 0:
                    await trio.sleep(0.02)
                fake.rotate_cert()
                r = await fake.servercmd(base_url(node), "refresh_certs")
                assert r.status_code == 200
                assert r.content == b""
                while node.certs.swaps == 0:
                    await trio.sleep(0.02)
                assert await peer_cert_serial(fake, port) == fake.leaf_serial() != old
                gate.set()
            assert result[0].status_code == 200
            assert result[0].content == data
            assert node.proxy.statistics().flights == 1


async def test_blacklist_deletes_cached_files(tmp_path: Path) -> None:
    keep, doomed = os.urandom(5000), os.urandom(6000)
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            assert node.cache is not None
            ids = []
            for blob in (keep, doomed):
                src = tmp_path / "src.bin"
                src.write_bytes(blob)
                fid = p.FileId.parse(f"{sha1(blob)}-{len(blob)}-1-1-jpg")
                assert await node.cache.import_file(src, fid)
                ids.append(fid)
            fake.blacklist = [str(ids[1]), "garbage-line"]
            assert await node.process_blacklist(43200) == 1
            assert fake.calls[-1] == ("get_blacklist", "43200")
            assert node.cache.stat_hit(ids[0]) is not None
            assert not node.cache.path_of(ids[1]).exists()
            assert node.cache.count == 1
            assert node.cache.statistics().blacklisted == 1


async def test_blacklist_is_fetched_again_every_interval(tmp_path: Path) -> None:
    """At start-up the last 3 days (259200 s), then every ``blacklist_interval`` seconds the
    last 12 h (43200 s), each reply applied to the cache."""
    blob = os.urandom(4000)
    fid = p.FileId.parse(f"{sha1(blob)}-{len(blob)}-1-1-jpg")
    with trio.fail_after(60):
        async with (
            open_fake_control(CREDS) as fake,
            run_node(tmp_path, fake, blacklist_interval=1) as node,
        ):
            assert node.cache is not None
            src = tmp_path / "src.bin"
            src.write_bytes(blob)
            assert await node.cache.import_file(src, fid)
            fake.blacklist = [str(fid)]
            while node.cache.path_of(fid).exists():
                await trio.sleep(0.05)
            asked = [arg for act, arg in fake.calls if act == "get_blacklist"]
    assert asked[0] == "259200"
    assert len(asked) >= 2
    assert set(asked[1:]) == {"43200"}
    assert node.cache.statistics().blacklisted == 1


async def test_key_expired_resyncs_clock_and_retries(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            fake.skew = 3000  # the server's clock jumps: our acttime is now stale
            await node.refresh_settings()
            acts = [a for a, _ in fake.calls]
            assert acts[-3:] == ["client_settings", "server_stat", "client_settings"]
            assert abs(node.clock.offset - 3000) <= 2


async def test_still_alive_and_term_bad_network_stop_the_node(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            fake.script("still_alive", "OK", "TERM_BAD_NETWORK:shutting you down")
            async with run_node(tmp_path, fake, still_alive_interval=1.0) as node:
                while node.state != "terminated":
                    await trio.sleep(0.05)
            assert fake.count("still_alive") == 2
            assert fake.calls[-1] == ("client_stop", "")


async def test_start_downloader_records_and_calls_back(tmp_path: Path) -> None:
    calls: list[str] = []
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            node.on_start_downloader = lambda: calls.append("go")
            r = await fake.servercmd(base_url(node), "start_downloader")
            assert r.status_code == 200
            assert node.downloader_requests == [""]
            assert calls == ["go"]
            r = await fake.servercmd(base_url(node), "refresh_settings")
            assert r.status_code == 200
            assert fake.calls[-1] == ("client_settings", "")


async def test_login_refused_stops_the_node_for_good(tmp_path: Path) -> None:
    # docs/hath-protocol.md §1.3: client_login is sent once per process; a refusal (bad
    # credentials) is terminal: serve() returns normally, state "refused", the reason kept.
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            fake.script("client_login", "FAIL_BAD_CREDENTIALS")
            async with open_store(tmp_path / "db.sqlite3") as store, trio.open_nursery() as n:
                node = new_node(tmp_path, fake, store)
                port = await n.start(node.serve)
            assert port == 0
            stats = node.statistics()
            assert stats.state == "refused"
            assert stats.reason is not None
            assert stats.reason.startswith("client_login refused: FAIL_BAD_CREDENTIALS")
            assert node.rpc.closed
            assert fake.count("client_login") == 1
            assert fake.count("client_stop") == 0


async def test_login_without_a_usable_reply_is_retryable(tmp_path: Path) -> None:
    from hathd.hath.node import NodeError, NodeRefused

    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            # A null reply on every try: the server never said no, so the supervisor may retry.
            fake.script("client_login", *["TEMPORARILY_UNAVAILABLE"] * 3)
            async with open_store(tmp_path / "db.sqlite3") as store:
                node = new_node(tmp_path, fake, store)
                with pytest.raises(NodeError, match="no usable reply") as caught:
                    await node.serve()
            assert not isinstance(caught.value, NodeRefused)
            assert node.state == "stopped"


async def test_restart_serves_from_the_index_without_rescan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(40_000)
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            fid = fake.add_file(data)
            async with run_node(tmp_path, fake) as node, client(fake) as c:
                assert (await c.get(base_url(node) + fake.keystamped_path(fid))).content == data

            from hathd.hath.cache import Cache

            def no_walk(*args: object) -> None:
                raise AssertionError("start-up must not walk the cache directory")

            monkeypatch.setattr(Cache, "_scan_blocking", no_walk)
            async with run_node(tmp_path, fake) as node, client(fake) as c:
                assert node.cache is not None
                assert node.cache.count == 1
                assert node.cache.total_bytes == len(data)
                r = await c.get(base_url(node) + fake.keystamped_path(fid))
                assert r.content == data
            assert fake.upstream_hits[fid] == 1


async def test_hit_with_corrupt_file_is_deleted_and_refetched(tmp_path: Path) -> None:
    data = os.urandom(30_000)
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            fid = fake.add_file(data)
            async with client(fake) as c:
                url = base_url(node) + fake.keystamped_path(fid)
                assert (await c.get(url)).content == data
                assert node.cache is not None
                path = node.cache.path_of(p.FileId.parse(fid))
                path.write_bytes(b"\0" * len(data))  # same size, wrong bytes
                node.cache.lru = type(node.cache.lru)()  # a new LRU sweep: first serve verifies
                node.cache._verify_cooldown_until = 0
                r = await c.get(url)
            assert r.content == data
            assert fake.upstream_hits[fid] == 2
            assert node.cache.statistics().corrupt_deleted == 1
            assert path.read_bytes() == data


async def test_pruning_under_a_small_disk_limit(tmp_path: Path) -> None:
    import attrs

    from hathd.hath.pruning import WANT_FREE

    day = 86400
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            assert node.cache is not None
            ages = [300, 100, 2]  # days
            ids = []
            for age in ages:
                blob = os.urandom(20_000)
                fid = p.FileId.parse(f"{sha1(blob)}-{len(blob)}-1-1-jpg")
                src = tmp_path / "src.bin"
                src.write_bytes(blob)
                assert await node.cache.import_file(src, fid)
                when = time.time() - age * day
                os.utime(node.cache.path_of(fid), (when, when))
                ids.append(fid)
            await node.cache.rescan(verify=False)  # take the mtimes into the index
            # a limit 1 byte short of the 100 MiB headroom: exactly one pruning step is due
            limit = node.cache.used_with_overhead() + WANT_FREE - 1
            # the limit comes from the server's settings (disklimit_bytes)
            fake.settings["disklimit_bytes"] = str(limit)
            await node.refresh_settings()
            assert node.disk_limit() == limit
            # a configured limit counts only when it is the smaller one
            node.cfg = attrs.evolve(node.cfg, disk_limit_bytes=limit * 2)
            assert node.disk_limit() == limit
            async with node.bus.subscribe(["hath"]) as sub:
                files, freed = await node.prune_now()
                events = aiter(sub)
                event = await anext(events)
                await events.aclose()  # type: ignore[attr-defined]
            assert (files, freed) == (1, 20_000)
            assert not node.cache.path_of(ids[0]).exists()  # the oldest range went first
            assert node.cache.path_of(ids[1]).exists()
            assert node.cache.path_of(ids[2]).exists()
            assert (event.type, event.data["files"], event.data["limit"]) == ("prune", 1, limit)
            assert await node.prune_now() == (0, 0)  # within the limit now


async def test_client_start_fail_codes(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            fake.script("client_start", "FAIL_CONNECT_TEST:port 1234 unreachable")
            async with run_node(tmp_path / "a", fake) as node:
                assert node.state == "connect-test-failed"
                assert node.policy.startup_only  # RPC-server IPs only, as Java idles
                assert node.server is not None
                assert node.server.admit("127.0.0.1", 0.0) is False  # an RPC IP: unmetered
                assert node.server.admit("203.0.113.9", 0.0) is None  # everyone else: refused
            fake.script("client_start", "FAIL_SOMETHING_NEW:details")
            async with run_node(tmp_path / "c", fake) as node:
                # Unknown codes: Java's notifyStart returns false and the client idles.
                assert (node.state, node.reason) == (
                    "start-failed",
                    "client_start: FAIL_SOMETHING_NEW:details",
                )
                assert node.policy.startup_only
            for code in ("FAIL_OTHER_CLIENT_CONNECTED", "FAIL_CID_IN_USE:31337"):
                fake.script("client_start", code)
                logins = fake.count("client_login")
                async with open_store(tmp_path / f"{code[:8]}.sqlite3") as store:
                    node = new_node(tmp_path / code[:8], fake, store)
                    await node.serve()  # returns: terminal, never a crash to restart
                assert node.state == "refused"
                assert node.reason is not None
                assert node.reason.startswith(f"client_start refused: {code}")
                assert fake.calls[-1][0] == "client_start"
                assert fake.count("client_login") == logins + 1


async def test_start_downloader_awaitable_callback_runs_in_the_node(tmp_path: Path) -> None:
    ran = trio.Event()

    async def downloader() -> None:
        ran.set()

    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake, run_node(tmp_path, fake) as node:
            node.on_start_downloader = downloader
            r = await fake.servercmd(base_url(node), "start_downloader", "x=1")
            assert r.status_code == 200
            await ran.wait()
            assert node.downloader_requests == ["x=1"]


async def test_without_rpc_server_ip_the_bootstrap_ip_is_trusted(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            del fake.settings["rpc_server_ip"]
            async with run_node(tmp_path, fake) as node:
                assert node.policy.rpc_ips == {"127.0.0.1"}
                r = await fake.servercmd(base_url(node), "still_alive")
                assert r.status_code == 200


async def test_startup_drops_files_outside_the_static_ranges(tmp_path: Path) -> None:
    keep, drop = b"keep-me" * 150, b"drop-me" * 150  # fixed: their ranges differ
    assert sha1(keep)[:4] != sha1(drop)[:4]
    with trio.fail_after(60):
        async with open_fake_control(CREDS) as fake:
            async with run_node(tmp_path, fake) as node:
                assert node.cache is not None
                ids = []
                for blob in (keep, drop):
                    fid = p.FileId.parse(f"{sha1(blob)}-{len(blob)}-1-1-jpg")
                    src = tmp_path / "src.bin"
                    src.write_bytes(blob)
                    assert await node.cache.import_file(src, fid)
                    ids.append(fid)
            fake.settings["static_ranges"] = f"{ids[0].static_range};ffff"
            async with run_node(tmp_path, fake) as node:
                assert node.cache is not None
                assert node.cache.count == 1
                assert node.cache.path_of(ids[0]).exists()
                assert not node.cache.path_of(ids[1]).exists()
