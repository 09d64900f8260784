"""Accounts over the real admin app: 401/403 on every route, keys and scopes, sessions and
CSRF, logout, lockout, and who may claim a fresh node."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import trio

from hathd.admin.app import create_app
from hathd.engine.plugin import EnginePlugin
from hathd.web import accounts, roles
from hathd.web.auth import COOKIE
from hathd.web.security import CSP
from web.authkit import PASSWORD, Node, claim, running_node

REMOTE = {"X-Forwarded-For": "203.0.113.9"}


def _routes(node: Node) -> list[tuple[str, str, str | None]]:
    """Every (method, path, scope needed or None when public) of the app the daemon serves,
    parameters filled in."""
    assert node.daemon.rt is not None
    app = create_app(node.daemon.rt, "unused", [EnginePlugin()])
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[-1] == "static" or rule.websocket:
            continue
        view = app.view_functions[rule.endpoint]
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", "x1", re.sub(r"<int:[^>]+>", "1", rule.rule))
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            scope = roles.route_scope(method, rule.rule)
            assert scope is not None, f"{method} {rule.rule} has no row in roles.ROUTES"
            if getattr(view, "_hathd_page", False) and scope != roles.PUBLIC:
                scope = "page"
            found.append((method, path, None if scope == roles.PUBLIC else scope))
    return found


async def test_every_route_needs_credentials_and_enough_scope(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.bearer() as admin:
        routes = _routes(node)
        assert ("PUT", "/api/v1/config", "admin") in routes
        assert ("DELETE", "/api/v1/auth/keys/x1", "admin") in routes
        assert ("POST", "/api/v1/queue/pause", "control") in routes
        assert ("POST", "/api/v1/auth/login", None) in routes
        reader = (await admin.post("/api/v1/auth/keys", json={"name": "r", "scope": "read"})).json()
        control = (
            await admin.post("/api/v1/auth/keys", json={"name": "c", "scope": "control"})
        ).json()
        async with (
            node.client() as anonymous,
            node.bearer(reader["key"]) as read_client,
            node.bearer(control["key"]) as control_client,
        ):
            for method, path, scope in routes:
                reply = await anonymous.request(method, path)
                if scope is None:
                    assert reply.status_code != 401, (method, path)
                    continue
                if scope == "page":  # a page sends the visitor to claim the node first
                    assert reply.status_code == 302, (method, path, reply.status_code)
                    assert reply.headers["Location"].endswith("/setup")
                    continue
                assert reply.status_code == 401, (method, path, reply.status_code)
                assert reply.json()["code"] == "unauthenticated"
                for held, client in (("read", read_client), ("control", control_client)):
                    if accounts.scope_allows(held, scope):
                        continue
                    refused = await client.request(method, path)
                    assert refused.status_code == 403, (held, method, path, refused.status_code)
                    assert refused.json()["code"] == "scope"
            assert (await read_client.get("/api/v1/status")).status_code == 200
            paused = await control_client.post("/api/v1/queue/pause")
            assert paused.status_code == 200, paused.text


async def test_admin_token_is_an_admin_key_and_new_keys_are_shown_once(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.bearer() as admin:
        made = await admin.post("/api/v1/auth/keys", json={"name": "ci", "scope": "control"})
        assert made.status_code == 201
        key = made.json()["key"]
        assert key.startswith("hathd_")
        assert len(key) > 40
        listed = (await admin.get("/api/v1/auth/keys")).json()["keys"]
        assert {k["name"] for k in listed} == {"admin.token", "ci"}
        assert key not in (await admin.get("/api/v1/auth/keys")).text
        assert all(k["prefix"] in ("", key[:10]) for k in listed)
        async with node.bearer(key) as ci:
            me = (await ci.get("/api/v1/auth/me")).json()
            assert (me["scope"], me["via"]) == ("control", "key")
            assert (await admin.delete(f"/api/v1/auth/keys/{made.json()['id']}")).json()["ok"]
            assert (await ci.get("/api/v1/status")).status_code == 401
        assert (await admin.delete("/api/v1/auth/keys/nosuchkey")).status_code == 404
        bad = await admin.post("/api/v1/auth/keys", json={"name": "x", "scope": "root"})
        assert bad.status_code == 400
        async with node.bearer("hathd_wrong") as wrong:
            assert (await wrong.get("/api/v1/status")).status_code == 401


async def test_unix_socket_is_trusted_as_admin(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.socket_client() as local:
        me = (await local.get("/api/v1/auth/me")).json()
        assert (me["scope"], me["via"]) == ("admin", "socket")
        made = await local.post("/api/v1/auth/keys", json={"name": "cli", "scope": "read"})
        assert made.status_code == 201


async def test_session_cookie_csrf_and_logout_revokes(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.client() as browser:
        csrf = await claim(node, browser)
        cookie = browser.cookies[COOKIE]
        setup = await browser.post("/api/v1/auth/setup", json={"password": PASSWORD})
        assert setup.status_code == 409
        me = (await browser.get("/api/v1/auth/me")).json()
        assert (me["user"], me["role"], me["csrf_token"]) == ("admin", "admin", csrf)
        no_csrf = await browser.post("/api/v1/auth/keys", json={"name": "k", "scope": "read"})
        assert (no_csrf.status_code, no_csrf.json()["code"]) == (403, "csrf")
        wrong = await browser.post(
            "/api/v1/auth/keys",
            json={"name": "k", "scope": "read"},
            headers={"X-CSRF-Token": "x" + csrf},
        )
        assert wrong.status_code == 403
        ok = await browser.post(
            "/api/v1/auth/keys", json={"name": "k", "scope": "read"}, headers={"X-CSRF-Token": csrf}
        )
        assert ok.status_code == 201
        sessions = (await browser.get("/api/v1/auth/sessions")).json()["sessions"]
        assert [s["current"] for s in sessions] == [True]
        assert sessions[0]["ip"] == "127.0.0.1"
        refused = await browser.post("/api/v1/auth/logout")
        assert refused.status_code == 403
        out = await browser.post("/api/v1/auth/logout", data={"csrf_token": csrf})
        assert out.status_code == 200
        async with node.client() as stale:
            stale.cookies.set(COOKIE, cookie)
            assert (await stale.get("/api/v1/auth/me")).status_code == 401
        async with node.bearer() as admin:
            assert (await admin.get("/api/v1/auth/sessions")).json()["sessions"] == []


async def test_an_admin_revokes_another_session(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.client() as first:
        await claim(node, first)
        async with node.client() as second:
            login = await second.post("/api/v1/auth/login", json={"password": PASSWORD})
            assert login.status_code == 200
            csrf = login.json()["csrf_token"]
            sessions = (await second.get("/api/v1/auth/sessions")).json()["sessions"]
            other = next(s["id"] for s in sessions if not s["current"])
            gone = await second.delete(
                f"/api/v1/auth/sessions/{other}", headers={"X-CSRF-Token": csrf}
            )
            assert gone.status_code == 200
            assert (await first.get("/api/v1/auth/me")).status_code == 401
            assert (await second.get("/api/v1/auth/me")).status_code == 200


async def test_bearer_requests_need_no_csrf_and_cookie_ignored_with_a_bad_key(
    tmp_path: Path,
) -> None:
    async with running_node(tmp_path) as node, node.client() as browser:
        await claim(node, browser)
        browser.headers["Authorization"] = "Bearer not-a-key"
        assert (await browser.get("/api/v1/auth/me")).status_code == 401
        async with node.bearer() as admin:
            made = await admin.post("/api/v1/auth/keys", json={"name": "n", "scope": "admin"})
            assert made.status_code == 201


async def test_login_lockout_grows_per_address(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.client() as browser:
        await claim(node, browser)
        async with node.client() as attacker:
            for _ in range(accounts.LOCKOUT_FREE - 1):
                bad = await attacker.post("/api/v1/auth/login", json={"password": "nope"})
                assert bad.status_code == 401
                assert bad.json()["code"] == "bad_credentials"
            last = await attacker.post("/api/v1/auth/login", json={"password": "nope"})
            assert (last.status_code, last.headers["Retry-After"]) == (401, "1")
            locked = await attacker.post("/api/v1/auth/login", json={"password": PASSWORD})
            assert locked.status_code == 429
            assert locked.json()["code"] == "locked_out"
            assert int(locked.headers["Retry-After"]) >= 1
    assert [accounts.lockout_delay(n) for n in range(4, 9)] == [0.0, 1.0, 2.0, 4.0, 8.0]
    assert accounts.lockout_delay(40) == accounts.LOCKOUT_MAX


async def test_lockout_lifts_and_a_good_login_clears_it(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.client() as browser:
        await claim(node, browser)
        assert node.daemon.rt is not None
        store = node.daemon.rt.store
        # nine failures whose delay has run out: the next login is allowed again
        await store.execute("INSERT INTO login_failures VALUES ('127.0.0.1', 9, 1000.0, 1016.0)")
        async with node.client() as again:
            ok = await again.post("/api/v1/auth/login", json={"password": PASSWORD})
            assert ok.status_code == 200
        assert await store.query("SELECT * FROM login_failures") == []


async def test_setup_from_loopback_needs_no_code(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node:
        code_file = node.state_dir / "setup-code"
        assert stat.S_IMODE(code_file.stat().st_mode) == 0o600
        async with node.client() as local:
            short = await local.post("/api/v1/auth/setup", json={"password": "short"})
            assert (short.status_code, short.json()["code"]) == (400, "bad_password")
            await claim(node, local)
        assert not code_file.exists()


async def test_remote_setup_needs_the_setup_code(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.client(**REMOTE) as remote:
        code = (node.state_dir / "setup-code").read_text().strip()
        assert re.fullmatch(r"[0-9a-f]{4}(-[0-9a-f]{4}){3}", code)
        for body in ({"password": PASSWORD}, {"password": PASSWORD, "setup_code": "0000"}):
            refused = await remote.post("/api/v1/auth/setup", json=body)
            assert (refused.status_code, refused.json()["code"]) == (403, "setup_code")
        assert (await remote.get("/api/v1/auth/me")).status_code == 401
        claimed = await remote.post(
            "/api/v1/auth/setup", json={"password": PASSWORD, "setup_code": code}
        )
        assert claimed.status_code == 201
        assert not (node.state_dir / "setup-code").exists()
        again = await remote.post(
            "/api/v1/auth/setup", json={"password": PASSWORD, "setup_code": code}
        )
        assert again.status_code == 409


async def test_setup_code_is_not_issued_again_once_claimed(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.client() as local:
        await claim(node, local)
    async with running_node(tmp_path) as node:
        assert not (node.state_dir / "setup-code").exists()
        async with node.client() as local:
            login = await local.post(
                "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD}
            )
            assert login.status_code == 200


async def test_security_headers_and_no_store(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.bearer() as admin:
        for reply in (await admin.get("/api/v1/status"), await admin.get("/healthz")):
            assert reply.headers["Content-Security-Policy"] == CSP
            assert "frame-ancestors 'none'" in CSP
            assert "unsafe-inline" not in CSP
            assert reply.headers["X-Frame-Options"] == "DENY"
            assert reply.headers["Cache-Control"] == "no-store"
            assert reply.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("body", [b"{", b"[1]", b"\xff"])
async def test_bad_login_bodies_are_400(tmp_path: Path, body: bytes) -> None:
    async with running_node(tmp_path) as node, node.client() as client:
        reply = await client.post(
            "/api/v1/auth/login", content=body, headers={"Content-Type": "application/json"}
        )
        assert reply.status_code == 400


def test_local_request_rules() -> None:
    from werkzeug.datastructures import Headers

    from hathd.web.auth import is_local_request

    tcp = {"server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5555)}
    assert is_local_request(tcp, Headers())
    assert is_local_request({"server": ("::1", 80), "client": ("::1", 1)}, Headers())
    assert not is_local_request(tcp, Headers({"X-Forwarded-For": "127.0.0.1"}))
    assert not is_local_request(tcp, Headers({"Forwarded": "for=192.0.2.1"}))
    assert not is_local_request({"server": ("0.0.0.0", 80), "client": ("192.0.2.1", 1)}, Headers())
    assert is_local_request({"server": None, "client": None}, Headers())
    mapped = {"server": ("::", 80), "client": ("::ffff:127.0.0.1", 1)}
    assert is_local_request(mapped, Headers())
    outside = {"server": ("::", 80), "client": ("::ffff:192.0.2.1", 1)}
    assert not is_local_request(outside, Headers())
    assert not is_local_request({"server": ("::", 80), "client": ("bogus", 1)}, Headers())


async def _ws_status(node: Node, headers: str) -> bytes:
    host_port = node.url.removeprefix("http://")
    host, port = host_port.split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(
            f"GET /api/v1/ws?rooms=system HTTP/1.1\r\nHost: {host_port}\r\n"
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{headers}\r\n".encode()
        )
        reply = b""
        with trio.fail_after(10):
            while b"\r\n" not in reply:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                reply += chunk
    return reply.split(b"\r\n", 1)[0]


async def test_cross_origin_requests_are_refused(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.client() as browser:
        own = node.url
        evil = {"Origin": "http://evil.example"}
        refused = await browser.post(
            "/api/v1/auth/setup", json={"password": PASSWORD}, headers=evil
        )
        assert (refused.status_code, refused.json()["code"]) == (403, "origin")
        null = await browser.post(
            "/api/v1/auth/login", json={"password": PASSWORD}, headers={"Origin": "null"}
        )
        assert null.status_code == 403
        csrf = await claim(node, browser)
        browser.headers["Origin"] = own
        made = await browser.post(
            "/api/v1/auth/keys", json={"name": "k", "scope": "read"}, headers={"X-CSRF-Token": csrf}
        )
        assert made.status_code == 201
        foreign = await browser.post(
            "/api/v1/auth/keys",
            json={"name": "k", "scope": "read"},
            headers={"X-CSRF-Token": csrf, **evil},
        )
        assert foreign.status_code == 403
        basic = await browser.post(
            "/api/v1/auth/keys",
            json={"name": "k", "scope": "read"},
            headers={"X-CSRF-Token": csrf, "Authorization": "Basic eDp5", **evil},
        )
        assert (basic.status_code, basic.json()["code"]) == (403, "origin")
        cookie = f"Cookie: {COOKIE}={browser.cookies[COOKIE]}\r\n"
        assert await _ws_status(node, cookie + f"Origin: {own}\r\n") == b"HTTP/1.1 101 "
        assert (await _ws_status(node, cookie + "Origin: http://evil.example\r\n")).startswith(
            b"HTTP/1.1 403"
        )
        assert (await _ws_status(node, "")).startswith(b"HTTP/1.1 401")


async def test_wrong_setup_codes_lock_the_address_out(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.client(**REMOTE) as remote:
        code = (node.state_dir / "setup-code").read_text().strip()
        for _ in range(accounts.LOCKOUT_FREE):
            wrong = await remote.post(
                "/api/v1/auth/setup", json={"password": PASSWORD, "setup_code": "dead-beef"}
            )
            assert wrong.status_code == 403
        locked = await remote.post(
            "/api/v1/auth/setup", json={"password": PASSWORD, "setup_code": code}
        )
        assert (locked.status_code, locked.json()["code"]) == (429, "locked_out")


async def test_lone_surrogates_are_refused_not_crashing(tmp_path: Path) -> None:
    body = b'{"password": "abc\\ud800defghijkl"}'
    json_type = {"Content-Type": "application/json"}
    async with running_node(tmp_path) as node, node.client() as client:
        for path in ("/api/v1/auth/setup", "/api/v1/auth/login"):
            reply = await client.post(path, content=body, headers=json_type)
            assert reply.status_code == 400, (path, reply.text)
        async with node.bearer() as admin:
            made = await admin.post(
                "/api/v1/auth/keys",
                content=b'{"name": "\\udc80", "scope": "read"}',
                headers=json_type,
            )
            assert made.status_code == 400


async def test_password_change_ends_other_sessions_and_socket_recovers(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.client() as first:
        csrf = await claim(node, first)
        async with node.client() as second:
            assert (await second.post("/api/v1/auth/login", json={"password": PASSWORD})).is_success
            headers = {"X-CSRF-Token": csrf}
            wrong = await first.post(
                "/api/v1/auth/password",
                json={"current_password": "nope", "new_password": "another long one"},
                headers=headers,
            )
            assert (wrong.status_code, wrong.json()["code"]) == (403, "bad_credentials")
            changed = await first.post(
                "/api/v1/auth/password",
                json={"current_password": PASSWORD, "new_password": "another long one"},
                headers=headers,
            )
            assert changed.json() == {"ok": True, "sessions_ended": 1}
            assert (await second.get("/api/v1/auth/me")).status_code == 401
            assert (await first.get("/api/v1/auth/me")).status_code == 200
        async with node.socket_client() as local:
            reset = await local.post("/api/v1/auth/password", json={"new_password": PASSWORD * 2})
            assert reset.json() == {"ok": True, "sessions_ended": 1}
        assert (await first.get("/api/v1/auth/me")).status_code == 401
        async with node.client() as third:
            old = await third.post("/api/v1/auth/login", json={"password": "another long one"})
            assert old.status_code == 401
            new = await third.post("/api/v1/auth/login", json={"password": PASSWORD * 2})
            assert new.status_code == 200
