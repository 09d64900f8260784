"""Small ASGI pieces shared by the fake sites: the lifespan handshake, reading a request body,
and serving an app with hypercorn on a free port of 127.0.0.1 (the ASGI protocol:
https://asgi.readthedocs.io/en/latest/specs/main.html)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


async def lifespan(scope: Scope, receive: Receive, send: Send) -> bool:
    """Answer the lifespan protocol when ``scope`` is one (then ``True``: the call is done)."""
    if scope["type"] != "lifespan":
        return False
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return True


async def read_body(receive: Receive) -> bytes:
    """The whole request body (bytes)."""
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


@asynccontextmanager
async def serving(app: App) -> AsyncIterator[int]:
    """Serve ``app`` with hypercorn on 127.0.0.1 (a free port, yielded) for the block."""
    cfg = HyperConfig()
    cfg.bind = ["127.0.0.1:0"]
    cfg.accesslog = None
    cfg.errorlog = None
    cfg.graceful_timeout = 0.5
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, cfg, shutdown_trigger=stop.wait))
        try:
            yield int(binds[0].rsplit(":", 1)[1])
        finally:
            stop.set()
            # a connection that outlives the graceful timeout does not hold the block open
            nursery.cancel_scope.deadline = trio.current_time() + 2
