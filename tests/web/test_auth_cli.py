"""``hathd keys create|ls|revoke`` over the unix socket of a running daemon."""

from __future__ import annotations

from pathlib import Path

from asyncclick.testing import CliRunner

from hathd.cli import cli
from web.authkit import running_node


async def test_keys_create_list_use_and_revoke(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        base = ["--state-dir", str(node.state_dir)]
        made = await CliRunner().invoke(
            cli, [*base, "keys", "create", "backup-script", "--scope", "control"]
        )
        assert made.exit_code == 0, made.output
        key = made.stdout.strip()
        assert key.startswith("hathd_")
        listed = await CliRunner().invoke(cli, [*base, "keys", "ls"])
        assert listed.exit_code == 0
        assert "backup-script" in listed.stdout
        assert "control" in listed.stdout
        assert key not in listed.stdout
        key_id = next(
            line.split()[0] for line in listed.stdout.splitlines() if "backup-script" in line
        )
        async with node.bearer(key) as client:
            assert (await client.get("/api/v1/auth/me")).json()["scope"] == "control"
            gone = await CliRunner().invoke(cli, [*base, "keys", "revoke", key_id])
            assert gone.exit_code == 0
            assert (await client.get("/api/v1/auth/me")).status_code == 401
        again = await CliRunner().invoke(cli, [*base, "keys", "revoke", key_id])
        assert again.exit_code == 1
        assert "no key" in again.stderr
        bad = await CliRunner().invoke(cli, [*base, "keys", "create", "x", "--scope", "root"])
        assert bad.exit_code == 2
