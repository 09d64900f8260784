"""The daemon assembled in-process: a crashing service's restarts reach status and the WebSocket."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from hathd import config as config_mod
from hathd.client import AdminClient
from hathd.daemon import Daemon
from hathd.supervisor import ServiceSpec


async def test_crashing_service_shows_in_status_and_system_room(tmp_path: Path) -> None:
    crashes = 0
    allowed = trio.Event()

    async def crasher(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal crashes
        task_status.started()
        await allowed.wait()
        crashes += 1
        raise RuntimeError(f"ingest exploded #{crashes}")

    cfg = config_mod.load(None, environ={"HATHD_ADMIN__PORT": "0"})
    daemon = Daemon(
        cfg,
        tmp_path / "state",
        plugins=[],
        extra_services=[ServiceSpec("crasher", crasher)],
        environ={},
    )
    async with trio.open_nursery() as nursery:
        rt = await nursery.start(daemon.run)
        token = (rt.paths.token_file).read_text().strip()
        tcp = next(u for u in daemon.admin_urls if not u.startswith("http://unix:"))
        ws_url = tcp.replace("http://", "ws://") + f"/api/v1/ws?rooms=system&token={token}"
        async with open_websocket_url(ws_url) as ws:
            hello = json.loads(await ws.get_message())
            assert hello["type"] == "hello"
            assert {s["name"] for s in hello["data"]["services"]} == {"admin", "metrics", "crasher"}
            allowed.set()
            seen: list[dict[str, Any]] = []
            with trio.fail_after(30):
                while not any(e["data"].get("restarts", 0) >= 2 for e in seen):
                    seen.append(json.loads(await ws.get_message()))
            restarting = [e for e in seen if e["data"]["state"] == "restarting"]
            assert restarting[0]["data"]["name"] == "crasher"
            assert restarting[0]["data"]["last_error"] == "RuntimeError: ingest exploded #1"
        async with AdminClient(rt.paths.socket) as admin:
            status = await admin.get("/api/v1/status")
        record = next(s for s in status["services"] if s["name"] == "crasher")
        assert record["restarts"] >= 2
        assert record["last_error"].startswith("RuntimeError: ingest exploded #")
        daemon.request_stop()


async def test_websocket_without_token_or_with_an_unknown_room_is_refused(tmp_path: Path) -> None:
    cfg = config_mod.load(None, environ={"HATHD_ADMIN__PORT": "0"})
    daemon = Daemon(cfg, tmp_path / "state", plugins=[], environ={})
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        tcp = next(u for u in daemon.admin_urls if not u.startswith("http://unix:"))
        host, port = tcp.removeprefix("http://").split(":")
        token = (tmp_path / "state" / "admin.token").read_text().strip()
        for target, status in (
            ("/api/v1/ws", b"401"),
            ("/api/v1/ws?token=wrong", b"401"),
            (f"/api/v1/ws?token={token}&rooms=jobs,nosuchroom", b"400"),
        ):
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                await stream.send_all(
                    f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n"
                    "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
                )
                reply = b""
                with trio.fail_after(10):
                    while b"\r\n\r\n" not in reply or (
                        status == b"400" and not reply.endswith(b"}")
                    ):
                        chunk = await stream.receive_some(4096)
                        if not chunk:
                            break
                        reply += chunk
            assert reply.startswith(b"HTTP/1.1 " + status), reply
            if status == b"400":
                assert b"nosuchroom" in reply
        daemon.request_stop()


async def test_configured_token_file_guards_tcp(tmp_path: Path) -> None:
    token_path = tmp_path / "secrets" / "hathd.token"
    token_path.parent.mkdir()
    token_path.write_text("configured-token-0123456789\n")
    cfg = config_mod.load(
        None, environ={"HATHD_ADMIN__PORT": "0", "HATHD_ADMIN__TOKEN_FILE": str(token_path)}
    )
    daemon = Daemon(cfg, tmp_path / "state", plugins=[], environ={})
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        tcp = next(u for u in daemon.admin_urls if not u.startswith("http://unix:"))
        async with httpx.AsyncClient(base_url=tcp) as client:
            good = await client.get(
                "/api/v1/status", headers={"Authorization": "Bearer configured-token-0123456789"}
            )
            bad = await client.get("/api/v1/status", headers={"Authorization": "Bearer other"})
        assert good.status_code == 200
        assert bad.status_code == 401
        assert not (tmp_path / "state" / "admin.token").exists()
        daemon.request_stop()


async def test_watchdog_pings_stop_while_the_store_writer_hangs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notify_path = tmp_path / "notify.sock"
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
    await sock.bind(str(notify_path))
    stamps: list[float] = []

    async def collect() -> None:
        while True:
            data = await sock.recv(4096)
            if b"WATCHDOG=1" in data.split(b"\n"):
                stamps.append(trio.current_time())

    cfg = config_mod.load(None, environ={"HATHD_ADMIN__PORT": "0"})
    env = {"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "200000"}  # a ping every 0.1 s
    daemon = Daemon(cfg, tmp_path / "state", plugins=[], environ=env)
    with sock, caplog.at_level(logging.ERROR, logger="hathd.daemon"):
        async with trio.open_nursery() as outer:
            outer.start_soon(collect)
            async with trio.open_nursery() as nursery:
                rt = await nursery.start(daemon.run)
                with trio.fail_after(10):
                    while len(stamps) < 3:
                        await trio.sleep(0.02)
                release = threading.Event()
                hung_at = trio.current_time()
                nursery.start_soon(rt.store.write, lambda _conn: release.wait(10))
                await trio.sleep(1.0)  # the writer thread is stuck for this second
                during = [t for t in stamps if hung_at + 0.25 < t]
                release.set()
                resumed_from = len(stamps)
                with trio.fail_after(10):
                    while len(stamps) < resumed_from + 2:
                        await trio.sleep(0.02)
                daemon.request_stop()
            outer.cancel_scope.cancel()
    assert during == []  # no liveness claimed while the store could not answer
    assert "watchdog: the store did not answer within 0.1 s" in caplog.text
