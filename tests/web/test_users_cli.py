"""``hathd users add|ls|passwd|role|rm`` over the unix socket of a running daemon."""

from __future__ import annotations

from pathlib import Path

from asyncclick.testing import CliRunner

from hathd.cli import cli
from web.authkit import PASSWORD, claim, running_node

NEW_PASSWORD = "another household password"


async def test_users_commands(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.client() as first:
        await claim(node, first)
        base = ["--state-dir", str(node.state_dir)]

        async def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
            result = await CliRunner().invoke(cli, [*base, *args], input=stdin)
            return result.exit_code, result.stdout, result.stderr

        code, out, err = await run("users", "add", "vera", stdin=f"{PASSWORD}\n{PASSWORD}\n")
        assert code == 0, err
        assert "added vera (viewer)" in out
        assert PASSWORD not in out
        code, out, err = await run(
            "users", "add", "olga", "--role", "operator", "--password-stdin", stdin=PASSWORD + "\n"
        )
        assert (code, out.strip()) == (0, "added olga (operator)"), err
        code, out, err = await run("users", "add", "olga", "--password-stdin", stdin=PASSWORD)
        assert code == 1
        assert "exists already" in err
        code, out, err = await run("users", "add", "x y", "--password-stdin", stdin=PASSWORD)
        assert code == 1
        assert "username" in err

        code, out, err = await run("keys", "create", "tv", "--scope", "control", "--user", "vera")
        assert code == 1
        assert "read at most" in err
        code, out, err = await run("keys", "create", "tv", "--scope", "read", "--user", "vera")
        assert code == 0, err
        assert out.strip().startswith("hathd_")
        code, out, _ = await run("users", "ls")
        assert code == 0
        lines = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
        assert lines == {"admin": "admin", "olga": "operator", "vera": "viewer"}

        async with node.client() as vera:
            login = await vera.post(
                "/api/v1/auth/login", json={"username": "vera", "password": PASSWORD}
            )
            assert login.json()["role"] == "viewer"
            code, out, err = await run("users", "role", "vera", "operator")
            assert (code, out.strip()) == (0, "vera is now operator"), err
            assert (await vera.get("/api/v1/auth/me")).json()["scope"] == "control"
            code, out, err = await run(
                "users", "passwd", "vera", "--password-stdin", stdin=NEW_PASSWORD + "\n"
            )
            assert code == 0, err
            assert "1 session(s) ended" in out
            assert (await vera.get("/api/v1/auth/me")).status_code == 401
            again = await vera.post(
                "/api/v1/auth/login", json={"username": "vera", "password": NEW_PASSWORD}
            )
            assert again.status_code == 200
            code, out, err = await run("users", "rm", "vera")
            assert code == 0, err
            assert "revoked 1 session(s) and 1 key(s)" in out
            assert (await vera.get("/api/v1/auth/me")).status_code == 401

        code, out, err = await run("users", "rm", "admin")
        assert code == 1
        assert "last admin" in err
        code, out, err = await run("users", "role", "admin", "viewer")
        assert code == 1
        assert "last admin" in err
        code, out, err = await run("users", "role", "admin", "root")
        assert code == 2
        code, _, err = await run("users", "rm", "nobody")
        assert code == 1
        assert "no user 'nobody'" in err
