"""A daemon assembled in-process with the engine plugin, served on 127.0.0.1 and the unix socket,
for the account and configuration API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import httpx
import trio

from hathd import config as config_mod
from hathd.daemon import Daemon
from hathd.engine.plugin import EnginePlugin
from hathd.runtime import Plugin

PASSWORD = "correct horse battery"


@attrs.define
class Node:
    daemon: Daemon
    state_dir: Path
    url: str

    @property
    def token(self) -> str:
        return (self.state_dir / "admin.token").read_text().strip()

    def client(self, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    def bearer(self, key: str | None = None) -> httpx.AsyncClient:
        return self.client(Authorization=f"Bearer {key or self.token}")

    def socket_client(self) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(uds=str(self.state_dir / "admin.sock"))
        return httpx.AsyncClient(transport=transport, base_url="http://hathd", timeout=30)


@asynccontextmanager
async def running_node(
    tmp_path: Path, config_text: str | None = None, plugins: list[Plugin] | None = None
) -> AsyncIterator[Node]:
    """Start the daemon (``plugins``, default the engine plugin only; admin port 0);
    ``config_text`` is written to ``tmp_path/hathd.toml`` and used as the configuration file
    when given."""
    config_path: str | None = None
    if config_text is not None:
        path = tmp_path / "hathd.toml"
        path.write_text(config_text)
        config_path = str(path)
    environ = {"HATHD_ADMIN__PORT": "0"}
    cfg = config_mod.load(config_path, environ=environ)
    state_dir = tmp_path / "state"
    daemon = Daemon(
        cfg,
        state_dir,
        config_path=config_path,
        plugins=plugins or [EnginePlugin()],
        environ=environ,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        url = next(u for u in daemon.admin_urls if not u.startswith("http://unix:"))
        try:
            yield Node(daemon, state_dir, url)
        finally:
            daemon.request_stop()


async def claim(node: Node, client: httpx.AsyncClient) -> str:
    """Set the admin password from loopback with ``client``; returns the CSRF token."""
    reply = await client.post("/api/v1/auth/setup", json={"password": PASSWORD})
    assert reply.status_code == 201, reply.text
    token: str = reply.json()["csrf_token"]
    return token
