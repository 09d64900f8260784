"""An Apprise ``json://`` receiver: an HTTP server on 127.0.0.1 recording the JSON bodies
POSTed to it (Apprise's JSON plugin posts one body per notification:
https://github.com/caronc/apprise/wiki/Notify_Custom_JSON)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import trio


@attrs.define
class Receiver:
    """An HTTP server on 127.0.0.1 recording the JSON bodies POSTed to it (Apprise
    ``json://`` notifications)."""

    server: http.server.ThreadingHTTPServer
    received: list[dict[str, Any]]
    cond: threading.Condition

    @property
    def url(self) -> str:
        """The Apprise URL posting here."""
        return f"json://127.0.0.1:{self.server.server_address[1]}/notify"

    async def wait_for(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait until ``count`` notifications arrived; returns them all."""

        def wait() -> bool:
            with self.cond:
                return self.cond.wait_for(lambda: len(self.received) >= count, timeout)

        assert await trio.to_thread.run_sync(wait), f"only {self.received!r} arrived"
        with self.cond:
            return list(self.received)


@contextmanager
def serve_receiver() -> Iterator[Receiver]:
    """Start a :class:`Receiver` on a free port of 127.0.0.1; shut down on exit."""
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
