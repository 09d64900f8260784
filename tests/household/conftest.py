"""Fixtures of the household features: an Apprise ``json://`` receiver on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from fanfic.support import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP server recording the JSON bodies Apprise POSTs; shut down afterwards."""
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
