"""``hathd run`` as shipped: a fresh node logs its setup code and writes it (mode 0600); the
web pages' API claims it, and the CLI's keys work against the same process."""

from __future__ import annotations

import re
import stat
from typing import Any

import httpx
import trio

from web.authkit import PASSWORD


async def test_fresh_node_prints_and_writes_the_setup_code(start_daemon: Any) -> None:
    daemon = await start_daemon()
    code_file = daemon.state_dir / "setup-code"
    code = code_file.read_text().strip()
    assert stat.S_IMODE(code_file.stat().st_mode) == 0o600
    with trio.fail_after(10):
        while code not in daemon.log():
            await trio.sleep(0.05)
    assert re.search(r"setup code [0-9a-f-]{19} \(also in .*setup-code\)", daemon.log())
    async with httpx.AsyncClient(base_url=daemon.tcp_url, timeout=30) as client:
        remote = {"X-Forwarded-For": "198.51.100.7"}
        refused = await client.post(
            "/api/v1/auth/setup", json={"password": PASSWORD}, headers=remote
        )
        assert refused.status_code == 403
        claimed = await client.post(
            "/api/v1/auth/setup", json={"password": PASSWORD, "setup_code": code}, headers=remote
        )
        assert claimed.status_code == 201
        assert not code_file.exists()
        me = await client.get("/api/v1/auth/me")
        assert me.json()["user"] == "admin"
        token = {"Authorization": f"Bearer {daemon.token}"}
        assert (await client.get("/api/v1/status", headers=token)).status_code == 200
    assert await daemon.stop() == 0
    again = await start_daemon(state_dir=daemon.state_dir)
    assert not code_file.exists()
    assert "setup code" not in again.log()
    assert await again.stop() == 0
