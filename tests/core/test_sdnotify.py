"""sd_notify against a real datagram socket; watchdog period from the environment."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from hathd.sdnotify import sd_notify, watchdog_period


def test_sends_one_datagram(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        assert sd_notify("READY=1", "STATUS=ok", environ={"NOTIFY_SOCKET": path})
        assert server.recv(4096) == b"READY=1\nSTATUS=ok"


def test_abstract_namespace(tmp_path: Path) -> None:
    name = f"hathd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert sd_notify("WATCHDOG=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert server.recv(4096) == b"WATCHDOG=1"


def test_no_socket_and_dead_socket_are_harmless(tmp_path: Path) -> None:
    assert not sd_notify("READY=1", environ={})
    assert not sd_notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "nobody")})


def test_watchdog_period() -> None:
    assert watchdog_period({}) is None
    assert watchdog_period({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_period({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())}) == 0.2
    assert watchdog_period({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_period({"WATCHDOG_USEC": "soon"}) is None
