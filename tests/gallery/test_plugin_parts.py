"""Plugin helpers: credentials, control-server target, download root; per-host gates."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
import trio.testing

from fakes.hath_control import open_fake_control
from fakes.hath_dl import GalleryQueue
from gallery.helpers import CREDS
from hathd.config import structure
from hathd.gallery.config import GalleryConfig
from hathd.gallery.hosts import HostGates
from hathd.gallery.plugin import (
    NoCredentials,
    gallery_config,
    load_credentials,
    rpc_opener,
    rpc_target,
)
from hathd.gallery.rpc import RpcTarget
from hathd.hath.node import HathNode
from hathd.hath.protocol import ServerClock
from hathd.runtime import open_runtime


def test_credentials_from_config_then_file(tmp_path: Path) -> None:
    config = structure({"hath": {"client_id": 1234, "client_key": "k" * 20}})
    creds = load_credentials(config, tmp_path)
    assert (creds.client_id, creds.client_key) == (1234, "k" * 20)
    bare = structure({})
    with pytest.raises(NoCredentials, match="client_login"):
        load_credentials(bare, tmp_path)
    (tmp_path / "client_login").write_text("5678-abcdefghij0123456789\n")
    assert load_credentials(bare, tmp_path).client_id == 5678
    (tmp_path / "client_login").write_text("garbage")
    with pytest.raises(NoCredentials, match="unusable"):
        load_credentials(bare, tmp_path)


def test_rpc_target_follows_hath_section() -> None:
    config = structure({"hath": {"rpc_server": "127.0.0.1:8081", "rpc_path": "16/rpc?"}})
    assert rpc_target(config) == RpcTarget("127.0.0.1", 8081, "16/rpc?")
    assert rpc_target(structure({})) == RpcTarget("rpc.hentaiathome.net", 80, "15/rpc?")


def test_gallery_config_defaults() -> None:
    cfg = gallery_config(structure({}))
    assert cfg == GalleryConfig()
    assert (cfg.tries_per_file, cfg.max_passes, cfg.success_delay, cfg.failure_delay) == (
        3,
        9,
        1.0,
        5.0,
    )
    assert cfg.free_space_margin == 1000 * 1024 * 1024


async def test_host_gates_limit_each_host() -> None:
    gates = HostGates(2)
    peak: dict[str, int] = {"a": 0, "b": 0}
    now: dict[str, int] = {"a": 0, "b": 0}
    release = trio.Event()

    async def use(host: str) -> None:
        async with gates.slot(host):
            now[host] += 1
            peak[host] = max(peak[host], now[host])
            await release.wait()
            now[host] -= 1

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for host in ["a"] * 5 + ["B"] * 3:
                nursery.start_soon(use, host.lower())
            await trio.testing.wait_all_tasks_blocked()
            assert gates.statistics().busy == {"a": 2, "b": 2}
            release.set()
    assert peak == {"a": 2, "b": 2}
    assert gates.statistics().hosts == 2


async def test_a_stopped_node_rpc_client_is_not_used(tmp_path: Path) -> None:
    # A node that stopped (refused, terminated) has closed its RPC client; the downloader must
    # fall back to a client of its own instead of failing on the closed one.
    with trio.fail_after(30):
        async with open_fake_control(CREDS) as fake:
            GalleryQueue.attach(fake)
            config = structure(
                {
                    "hath": {
                        "rpc_server": fake.rpc_host,
                        "client_id": CREDS.client_id,
                        "client_key": CREDS.client_key,
                    }
                }
            )
            async with open_runtime(config, tmp_path) as rt:
                node = HathNode(
                    config.hath,
                    CREDS,
                    store=rt.store,
                    bus=rt.bus,
                    data_dir=rt.paths.data,
                    cache_root=tmp_path / "cache",
                )
                await node.rpc.aclose()  # what serve() does when the node stops
                opener = rpc_opener(
                    rt, ServerClock(), gallery_config(config), SimpleNamespace(node=node)
                )
                async with opener() as rpc:
                    assert rpc.client is not node.rpc
                    assert await rpc.fetchqueue("") == b"NO_PENDING_DOWNLOADS\n"
