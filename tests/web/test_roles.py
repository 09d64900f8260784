"""Every route of the admin app × every role: the table of hathd.web.roles decides, and the app
obeys it for sessions of each role and API keys of each scope (a key never above its user).

The app is built with every plugin set up (as tests/core/test_malformed_bodies.py does) and
served by hypercorn on 127.0.0.1, so the routes enumerated from its ``url_map`` are all of
them; a route added later without a row in ``roles.ROUTES`` fails here.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import attrs
import httpx
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve
from quart_trio import QuartTrio

from hathd.admin.app import create_app
from hathd.config import structure
from hathd.daemon import default_plugins
from hathd.engine import Engine
from hathd.runtime import open_runtime
from hathd.web import accounts, roles
from web.authkit import PASSWORD


@attrs.define
class Served:
    app: QuartTrio
    url: str
    token: str

    def client(self, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


@asynccontextmanager
async def served_app(tmp_path: Path) -> AsyncIterator[Served]:
    """The admin app with every plugin set up (no service runs but the engine, its queue
    paused), served on a free TCP port of 127.0.0.1."""
    state = tmp_path / "state"
    config = structure(
        {
            "q4d": {"enabled": True},
            "fanfic": {"enabled": True},
            "hath": {"enabled": True},
            "anime": {"enabled": True, "library": str(tmp_path / "anime")},
        }
    )
    async with open_runtime(config, state) as rt, trio.open_nursery() as nursery:
        plugins = default_plugins()
        for plugin in plugins:
            await plugin.setup(rt)
        engine = rt.engine
        assert isinstance(engine, Engine)
        await nursery.start(engine.serve)
        await engine.pause_queue()
        token = "node-token-" + "x" * 20
        app = create_app(rt, token, plugins, plugins)
        hyper = HyperConfig()
        hyper.bind = ["127.0.0.1:0"]
        hyper.graceful_timeout = 0.5
        done = trio.Event()
        urls = await nursery.start(partial(serve, app, hyper, shutdown_trigger=done.wait))
        try:
            yield Served(app, urls[0].rstrip("/"), token)
        finally:
            done.set()
            nursery.cancel_scope.cancel()


def _is_page(path: str) -> bool:
    """A page sends a browser without a session to the login; the JSON API, the metrics and
    images such as covers answer 401."""
    return not path.startswith(("/api/", "/covers/")) and path != "/metrics"


def _fill(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", "x1", re.sub(r"<int:[^>]+>", "1", rule))


def _routes(app: QuartTrio) -> list[tuple[str, str, str]]:
    """(method, rule, needed) of every HTTP route; asserts each has its row in the table."""
    found = []
    for rule in app.url_map.iter_rules():
        methods = (
            ["WS"] if rule.websocket else sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        )
        for method in methods:
            needed = roles.route_scope(method, rule.rule)
            assert needed is not None, f"{method} {rule.rule} has no row in roles.ROUTES"
            found.append((method, rule.rule, needed))
    return found


@attrs.define
class Caller:
    name: str
    scope: str  # the effective scope expected
    client: httpx.AsyncClient
    page: bool = False  # a session: pages answer it like a browser


async def _session(served: Served, username: str) -> httpx.AsyncClient:
    client = served.client()
    reply = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": PASSWORD}
    )
    assert reply.status_code == 200, reply.text
    client.headers["X-CSRF-Token"] = reply.json()["csrf_token"]
    return client


async def test_every_route_against_every_role(tmp_path: Path) -> None:
    async with served_app(tmp_path) as served, served.client() as anonymous:
        routes = _routes(served.app)
        rules = {(m, r) for m, r, _ in routes}
        stale = sorted(set(roles.ROUTES) - rules)
        assert not stale, f"rows of roles.ROUTES without a route: {stale}"
        async with served.client() as first:
            claimed = await first.post("/api/v1/auth/setup", json={"password": PASSWORD})
            assert claimed.status_code == 201
        node = served.client(Authorization=f"Bearer {served.token}")
        for username, role in (("olga", "operator"), ("vera", "viewer"), ("dora", "admin")):
            made = await node.post(
                "/api/v1/users", json={"username": username, "password": PASSWORD, "role": role}
            )
            assert made.status_code == 201, made.text
        keys: dict[str, str] = {}
        for name, scope, user in (
            ("admin-read", "read", "admin"),
            ("admin-control", "control", "admin"),
            ("admin-admin", "admin", "admin"),
            ("olga-control", "control", "olga"),
            ("vera-read", "read", "vera"),
            ("dora-admin", "admin", "dora"),
        ):
            made = await node.post(
                "/api/v1/auth/keys", json={"name": name, "scope": scope, "user": user}
            )
            assert made.status_code == 201, made.text
            keys[name] = made.json()["key"]
        too_wide = await node.post(
            "/api/v1/auth/keys", json={"name": "x", "scope": "control", "user": "vera"}
        )
        assert (too_wide.status_code, too_wide.json()["code"]) == (400, "scope_exceeds_role")
        # dora's admin key after dora is demoted: the key acts as a viewer from the next request
        demoted = await node.patch("/api/v1/users/dora", json={"role": "viewer"})
        assert demoted.json()["role"] == "viewer"
        callers = [
            Caller("admin session", "admin", await _session(served, "admin"), page=True),
            Caller("operator session", "control", await _session(served, "olga"), page=True),
            Caller("viewer session", "read", await _session(served, "vera"), page=True),
        ]
        for name, scope in (
            ("admin-read", "read"),
            ("admin-control", "control"),
            ("admin-admin", "admin"),
            ("olga-control", "control"),
            ("vera-read", "read"),
            ("dora-admin", "read"),
        ):
            callers.append(Caller(name, scope, served.client(Authorization=f"Bearer {keys[name]}")))
        for caller in callers:
            me = await caller.client.get("/api/v1/auth/me")
            assert me.json()["scope"] == caller.scope, (caller.name, me.text)
        # logout last: it ends the session it is sent with
        ordered = sorted(
            (r for r in routes if r[0] != "WS"), key=lambda r: r[1] == "/api/v1/auth/logout"
        )
        checked = 0
        for method, rule, needed in ordered:
            path = _fill(rule)
            reply = await anonymous.request(method, path)
            if needed == roles.PUBLIC:
                assert reply.status_code not in (401, 403), (method, rule, reply.status_code)
            elif method == "GET" and _is_page(path):
                assert reply.status_code == 302, (method, rule, reply.status_code)
                assert reply.headers["Location"].endswith("/login")
            else:
                assert reply.status_code == 401, (method, rule, reply.status_code)
                assert reply.json()["code"] == "unauthenticated"
            for caller in callers:
                got = await caller.client.request(method, path)
                allowed = needed == roles.PUBLIC or accounts.scope_allows(caller.scope, needed)
                where = (caller.name, method, rule, needed, got.status_code, got.text[:200])
                if allowed:
                    assert got.status_code not in (401, 403), where
                else:
                    assert got.status_code == 403, where
                    if got.headers["Content-Type"].startswith("application/json"):
                        assert got.json()["code"] == "scope", where
                    else:
                        assert "Not allowed" in got.text, where
                checked += 1
        assert checked == len(ordered) * len(callers)
        for caller in callers:
            await caller.client.aclose()
        await node.aclose()


async def test_navigation_shows_what_the_role_may_open(tmp_path: Path) -> None:
    async with served_app(tmp_path) as served, served.client() as first:
        await first.post("/api/v1/auth/setup", json={"password": PASSWORD})
        async with served.client(Authorization=f"Bearer {served.token}") as node:
            for username, role in (("olga", "operator"), ("vera", "viewer")):
                await node.post(
                    "/api/v1/users",
                    json={"username": username, "password": PASSWORD, "role": role},
                )
        expected = {
            "admin": {"/requests", "/log", "/users", "/settings"},
            "olga": {"/requests", "/log"},
            "vera": {"/requests"},
        }
        for username, extra in expected.items():
            client = await _session(served, username)
            try:
                page = (await client.get("/")).text
            finally:
                await client.aclose()
            links = set(re.findall(r'<li><a href="([^"]+)"', page))
            assert links == {"/", "/queue", "/library", "/work"} | extra, (username, links)


def test_the_table_gives_each_role_its_part() -> None:
    smallest = {
        "admin": [
            ("GET", "/settings"),
            ("GET", "/users"),
            ("GET", "/api/v1/config"),
            ("PUT", "/api/v1/config"),
            ("POST", "/api/v1/config/backups/<backup_id>/restore"),
            ("GET", "/api/v1/auth/keys"),
            ("POST", "/api/v1/auth/keys"),
            ("GET", "/api/v1/auth/sessions"),
            ("GET", "/api/v1/users"),
            ("POST", "/api/v1/users"),
            ("PATCH", "/api/v1/users/<username>"),
            ("DELETE", "/api/v1/users/<username>"),
        ],
        "operator": [
            ("POST", "/api/v1/jobs"),
            ("POST", "/api/v1/queue/reorder"),
            ("POST", "/api/v1/queue/pause"),
            ("POST", "/api/v1/anime"),
            ("POST", "/api/v1/anime/<key>/queue"),
            ("POST", "/api/v1/uploads"),
            ("POST", "/api/v1/hath/download"),
            ("POST", "/api/v1/fanfic/stories"),
            ("POST", "/api/v1/requests/<int:request_id>/approve"),
            ("POST", "/api/v1/requests/<int:request_id>/reject"),
            ("GET", "/api/v1/audit"),
            ("GET", "/log"),
        ],
        "viewer": [
            ("GET", "/"),
            ("GET", "/queue"),
            ("GET", "/library"),
            ("GET", "/work"),
            ("GET", "/requests"),
            ("GET", "/api/v1/jobs"),
            ("GET", "/api/v1/anime"),
            ("WS", "/api/v1/ws"),
            ("POST", "/api/v1/requests"),
        ],
    }
    for role, rows in smallest.items():
        weaker = roles.ROLES[: roles.ROLES.index(role)]
        for row in rows:
            needed = roles.ROUTES[row]
            assert roles.role_allows(role, needed), (role, row)
            assert not any(roles.role_allows(w, needed) for w in weaker), (role, row)
    # a viewer reads, and changes nothing but their session, password and requests
    viewer_changes = {
        row
        for row, needed in roles.ROUTES.items()
        if row[0] not in ("GET", "WS") and needed in ("read", roles.PUBLIC)
    }
    assert viewer_changes == {
        ("POST", "/api/v1/auth/setup"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/auth/password"),
        ("POST", "/api/v1/requests"),
        ("POST", "/api/v1/anime/search"),
    }
    assert roles.effective_scope("admin", "viewer") == "read"
    assert roles.effective_scope("admin", "operator") == "control"
    assert roles.effective_scope("read", "admin") == "read"
    assert roles.effective_scope("control", "operator") == "control"
