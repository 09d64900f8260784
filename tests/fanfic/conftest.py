"""Fixtures of the fanfic tests: dovecot on 127.0.0.1, an Apprise notification receiver."""

from __future__ import annotations

import http.server
import json
import shutil
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio

from fanfic.support import Dovecot, Receiver, free_port, make_rig, write_dovecot_config


@pytest.fixture
async def dovecot() -> AsyncIterator[Dovecot]:
    """A running dovecot with user ``fanfic`` / ``pw`` on a plain (STARTTLS-capable) port and
    an implicit-TLS port (certificate from ``rig/ca.pem``); stopped and removed afterwards."""
    rig, user, group = make_rig()
    server = Dovecot(rig, free_port(), free_port())
    write_dovecot_config(server, user, group)
    await server.start()
    try:
        yield server
    finally:
        with trio.CancelScope(shield=True):
            await server.stop(signal.SIGKILL)
        shutil.rmtree(rig, ignore_errors=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A notification receiver; shut down afterwards."""
    received: list[dict[str, Any]] = []
    cond = threading.Condition()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            with cond:
                received.append(body)
                cond.notify_all()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(server, received, cond)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
