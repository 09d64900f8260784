"""Serving processes (``hath.serving_processes`` = 2): hits served by the second process,
misses and ``/servercmd/`` forwarded to the owner, refusals everywhere, counters summed, and no
process outliving the node."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import trio

from fakes.hath_control import open_fake_control
from hath.helpers import cached_file, server_port
from hathd.hath import protocol as p
from hathd.hath.node import HathNode

from .helpers import CREDS, base_url, client, raw_request, run_node, sha1

N = 24
"""Connections per kind: the kernel spreads them over both processes (by the 4-tuple hash),
so the chance that one process sees none of them is 2 × 2^-24."""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


async def _reported(node: HathNode, want: dict[int, int], accepted: int) -> None:
    """Wait until the summed counters reach ``want`` statuses and ``accepted`` connections
    (serving processes report every 0.5 s)."""
    assert node.server is not None
    with trio.fail_after(10):
        while True:
            stats = node.server.statistics()
            if stats.accepted >= accepted and all(
                stats.statuses.get(k, 0) >= v for k, v in want.items()
            ):
                return
            await trio.sleep(0.1)


async def test_hits_refusals_misses_and_servercmd_across_processes(tmp_path: Path) -> None:
    data = os.urandom(70_000)
    with trio.fail_after(120):
        async with (
            open_fake_control(CREDS) as fake,
            run_node(tmp_path, fake, serving_processes=2) as node,
        ):
            assert node.processes is not None
            assert len(node.statistics().serving_pids) == 1
            fid = await cached_file(node, tmp_path, data)
            base = base_url(node)
            async with client(fake) as c:
                for _ in range(N):
                    r = await c.get(base + fake.keystamped_path(fid))
                    assert r.status_code == 200
                    assert r.content == data
                stale = fake.keystamped_path(fid, when=fake.server_time() - 3600)
                for _ in range(N):
                    assert (await c.get(base + stale)).status_code == 403
            for _ in range(N):  # hostile paths are refused in either process
                raw = await raw_request(
                    fake, server_port(node), b"GET /h/../../etc/passwd HTTP/1.1\r\n\r\n"
                )
                assert raw.startswith(b"HTTP/1.1 403 "), raw[:40]
            async with client(fake) as c:
                misses = [fake.add_file(os.urandom(30_000 + i)) for i in range(8)]
                for miss in misses:
                    r = await c.get(base + fake.keystamped_path(miss))
                    assert r.status_code == 200
                    assert sha1(r.content) == miss[:40]
            for _ in range(N):
                r = await fake.servercmd(base, "still_alive")
                assert r.content == b"I feel FANTASTIC and I'm still alive"
            await _reported(node, {200: 2 * N + 8, 403: 2 * N}, 4 * N + 8)
            peer = node.processes.peers[0].stats
            assert peer.hits > 0, "the serving process served no hit"
            assert peer.statuses.get(403, 0) > 0, "the serving process refused nothing"
            assert peer.forwarded > 0, "the serving process forwarded nothing"
            assert node.server is not None
            total = node.server.statistics()
            assert total.hits == N
            assert total.misses == 8
            assert total.accepted == 4 * N + 8
            assert total.statuses == {200: 2 * N + 8, 403: 2 * N}
            # the cache index saw every miss, whichever process took the connection
            assert node.cache is not None
            assert node.cache.count == 1 + 8
            # /servercmd/ still checks the origin IP when forwarded
            node.policy.rpc_ips = {"192.0.2.1"}
            await node.processes.sync()
            for _ in range(8):
                r = await fake.servercmd(base, "still_alive")
                assert r.status_code == 403


async def test_a_killed_serving_process_is_replaced(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    with trio.fail_after(120):
        async with (
            open_fake_control(CREDS) as fake,
            run_node(tmp_path, fake, serving_processes=2) as node,
        ):
            assert node.processes is not None
            fid = await cached_file(node, tmp_path, data)
            (old,) = node.statistics().serving_pids
            os.kill(old, signal.SIGKILL)
            with trio.fail_after(30):
                while node.statistics().serving_pids in ([], [old]):
                    await trio.sleep(0.05)
            assert node.processes.restarts == 1
            await node.processes.sync()
            async with client(fake) as c:
                for _ in range(N):
                    r = await c.get(base_url(node) + fake.keystamped_path(fid))
                    assert r.content == data
            with trio.fail_after(10):
                while node.processes.peers[0].stats.hits == 0:
                    await trio.sleep(0.1)


async def test_a_corrupt_file_is_never_served_whichever_process_checks_it(
    tmp_path: Path,
) -> None:
    """The first serve of a file SHA-1-checks it (one check per process every 2 s); a corrupt
    file is deleted and fetched again, so its bytes never go out, in the node or in a serving
    process (six files: the chance that the serving process checks none of them is 2^-6)."""
    with trio.fail_after(120):
        async with (
            open_fake_control(CREDS) as fake,
            run_node(tmp_path, fake, serving_processes=2) as node,
        ):
            assert node.cache is not None
            assert node.processes is not None
            async with client(fake) as c:
                for i in range(6):
                    data = os.urandom(20_000 + i)
                    fid = fake.add_file(data)
                    src = tmp_path / "src.bin"
                    src.write_bytes(data)
                    assert await node.cache.import_file(src, p.FileId.parse(fid))
                    node.cache.path_of(p.FileId.parse(fid)).write_bytes(bytes(len(data)))
                    node.cache.lru = type(node.cache.lru)()  # the import marked it as checked
                    await trio.sleep(2.1)  # past both processes' verification cooldown
                    for _ in range(3):
                        r = await c.get(base_url(node) + fake.keystamped_path(fid))
                        assert r.status_code == 200
                        assert r.content == data
            with trio.fail_after(10):
                while node.cache.statistics().corrupt_deleted < 6:
                    await trio.sleep(0.05)
            assert node.cache.count == 6  # fetched again, intact


NODE_SCRIPT = """
import sys, trio
from hathd.events import EventBus
from hathd.hath.config import HathConfig
from hathd.hath.node import HathNode
from hathd.hath.protocol import Credentials
from hathd.store import open_store
from pathlib import Path

async def main():
    state = Path(sys.argv[2])
    cfg = HathConfig(enabled=True, rpc_server=sys.argv[1], listen_host="127.0.0.1",
                     prune_interval=3600.0, serving_processes=2)
    async with open_store(state / "hathd.sqlite3") as store, trio.open_nursery() as n:
        node = HathNode(cfg, Credentials(int(sys.argv[3]), sys.argv[4]), store=store,
                        bus=EventBus(), data_dir=state / "data", cache_root=state / "cache")
        await n.start(node.serve)
        print(*node.statistics().serving_pids, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


async def test_serving_processes_die_with_a_killed_node(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with open_fake_control(CREDS) as fake:
            node = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    "-c",
                    NODE_SCRIPT,
                    fake.rpc_host,
                    str(tmp_path),
                    str(CREDS.client_id),
                    CREDS.client_key,
                ],
                stdout=subprocess.PIPE,
            )
            try:
                assert node.stdout is not None
                line = b""
                while not line.endswith(b"\n"):
                    chunk = await node.stdout.receive_some(100)
                    assert chunk, "the node exited before listening"
                    line += chunk
                (worker,) = [int(x) for x in line.split()]
                assert _alive(worker)
                node.kill()  # SIGKILL: no clean-up code runs in the node
                await node.wait()
                with trio.fail_after(10):
                    while _alive(worker):
                        await trio.sleep(0.05)
            finally:
                if node.returncode is None:
                    node.kill()
                    await node.wait()
