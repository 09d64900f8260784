"""Who is asking: the principal of each request, scope checks, CSRF and page logins.

A request's principal comes from, in order:

1. the unix socket — trusted as the node's admin (the socket's mode 0600 in a 0700 state
   directory is the access control; the CLI uses it);
2. ``Authorization: Bearer <key>`` — an API key from the store (the ``admin.token`` file's
   token is one admin key); a WebSocket may pass ``?token=<key>`` instead, as browsers cannot
   set headers there;
3. the ``hathd_session`` cookie — a server-side session of a user (see
   :mod:`hathd.web.accounts`).

Each route needs the scope of its row in :data:`hathd.web.roles.ROUTES` (a route without a
row: the one given with :func:`require`, else ``read`` for GET/HEAD and ``control`` for other
methods; :func:`public` routes need none). :func:`login_required` pages redirect to ``/login``
(``/setup`` on a node not yet claimed) instead of answering 401, and a page the caller's role
may not open answers 403 with a short HTML page.

Origin: a state-changing request without a bearer key, and a WebSocket opened
with the cookie, must not name a foreign ``Origin`` (403 ``origin``).

CSRF: a state-changing request (not GET/HEAD/OPTIONS) authenticated by the cookie must carry
the session's token in the ``X-CSRF-Token`` header or the ``csrf_token`` form field (the
synchroniser-token pattern, OWASP CSRF Prevention Cheat Sheet). Bearer-key requests are
exempt: a browser never adds that header on its own.

Refusals are JSON ``{"error": <text>, "code": <code>}``: 401 ``unauthenticated``, 403
``scope``, ``csrf`` or ``origin``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
from quart import Response, g, redirect, request, websocket
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers

from hathd.store import Store
from hathd.web import accounts, roles

COOKIE: Final = "hathd_session"
"""Name of the session cookie."""

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

_SCOPE_ATTR: Final = "_hathd_scope"
_PUBLIC_ATTR: Final = "_hathd_public"
_PAGE_ATTR: Final = "_hathd_page"

type View = Callable[..., Awaitable[Any]]


@attrs.frozen
class Principal:
    """The authenticated party of a request.

    ``via`` is ``socket``, ``key``, ``session`` or ``approval`` (the app submitting an approved
    request as its approver); ``user_id`` is None for the socket and the ``admin.token`` key;
    ``csrf`` only for ``session``.
    """

    username: str
    role: str
    scope: str
    via: str
    user_id: int | None = None
    session_id: str | None = None
    csrf: str | None = None
    key_id: str | None = None


@attrs.define
class WebAuth:
    """The auth layer's state for one app: the store, the node's token and state directory.

    ``clock`` returns Unix seconds (tests may replace it).
    """

    store: Store
    token: str
    state_dir: Path
    clock: Callable[[], float] = time.time

    @property
    def setup_code_path(self) -> Path:
        """``<state>/setup-code``: the one-time code that claims a fresh node remotely."""
        return self.state_dir / "setup-code"

    async def prepare(self) -> None:
        """Create the account tables and register the ``admin.token`` key."""
        await accounts.migrate(self.store)
        now = self.clock()
        await self.store.write(lambda conn: accounts.register_token(conn, self.token, now))


def auth_of(app: QuartTrio) -> WebAuth:
    """The :class:`WebAuth` installed on ``app`` by :func:`install`."""
    value = app.extensions["hathd.auth"]
    assert isinstance(value, WebAuth)
    return value


# -- decorators --------------------------------------------------------------------------


def require(scope: str) -> Callable[[View], View]:
    """Mark an API view as needing ``scope`` (``read``, ``control`` or ``admin``)."""
    if scope not in accounts.SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def mark(view: View) -> View:
        setattr(view, _SCOPE_ATTR, scope)
        return view

    return mark


def public(view: View) -> View:
    """Mark a view as open to anyone (login and setup pages, their JSON routes)."""
    setattr(view, _PUBLIC_ATTR, True)
    return view


def login_required(view: View) -> View:
    """Mark a page view: without a principal, redirect to ``/login`` (``/setup`` while the
    node has no admin) instead of answering 401. Scope ``read`` is enough to see a page."""
    setattr(view, _PAGE_ATTR, True)
    return view


# -- request context ---------------------------------------------------------------------


def current_principal() -> Principal | None:
    """The principal of the current request or WebSocket, None when anonymous."""
    value = g.get("principal")
    return value if isinstance(value, Principal) else None


def csrf_token() -> str:
    """The CSRF token of the current session ("" when the request has no session)."""
    principal = current_principal()
    return principal.csrf or "" if principal else ""


def is_trusted_scope(scope: Mapping[str, Any]) -> bool:
    """True when the ASGI ``scope`` came over a unix socket (hypercorn gives no TCP server)."""
    server = scope.get("server")
    return server is None or (isinstance(server, tuple | list) and server[1] is None)


_FORWARD_HEADERS: Final = ("forwarded", "x-forwarded-for", "x-real-ip", "x-forwarded-host")


def is_local_request(scope: Mapping[str, Any], headers: Headers) -> bool:
    """True for the unix socket, or a TCP peer on a loopback address whose request carries no
    proxy header (a reverse proxy on the same host would make every visitor look local)."""
    if is_trusted_scope(scope):
        return True
    if any(name in headers for name in _FORWARD_HEADERS):
        return False
    client = scope.get("client")
    if not client:
        return False
    try:
        address = ipaddress.ip_address(str(client[0]).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def client_address(scope: Mapping[str, Any]) -> str:
    """The peer's address (``local`` over the unix socket)."""
    client = scope.get("client")
    return str(client[0]) if client else "local"


def same_origin(headers: Headers) -> bool:
    """False when the request names an ``Origin`` (RFC 6454) other than the host it was sent
    to (``Host``, or ``X-Forwarded-Host`` behind a proxy); True without an ``Origin``.

    Browsers send ``Origin`` on every cross-origin POST and WebSocket handshake, so this
    refuses cross-site form posts (including login CSRF) and WebSocket hijacking.
    """
    origin = headers.get("Origin")
    if origin is None:
        return True
    if origin == "null" or "://" not in origin:
        return False
    netloc = origin.split("://", 1)[1].rstrip("/").lower()
    hosts = {headers.get("Host", "").lower(), headers.get("X-Forwarded-Host", "").lower()}
    return netloc in hosts - {""}


def bearer(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    if value and value.lower().startswith("bearer "):
        return value[7:].strip() or None
    return None


def error(status: int, code: str, message: str, **extra: Any) -> Response:
    """A JSON refusal ``{"error": message, "code": code, **extra}``."""
    body = {"error": message, "code": code, **extra}
    return Response(json.dumps(body), status=status, mimetype="application/json")


INTERNAL_PRINCIPAL: Final = "hathd.principal"
"""ASGI scope extension carrying the :class:`Principal` of a request the app makes to itself
(an approved request submitting its job, :mod:`hathd.web.requests`); a server never sets it
from the network."""

SOCKET_PRINCIPAL: Final = Principal(username="local", role="admin", scope="admin", via="socket")


async def resolve(
    auth: WebAuth,
    scope: Mapping[str, Any],
    authorization: str | None,
    query_token: str | None,
    cookie: str | None,
) -> Principal | None:
    """The principal of a request, or None when it presents nothing valid.

    A presented but unknown key gives None even if a cookie is present too.
    """
    internal = (scope.get("extensions") or {}).get(INTERNAL_PRINCIPAL)
    if isinstance(internal, Principal):
        return internal
    if is_trusted_scope(scope):
        return SOCKET_PRINCIPAL
    now = auth.clock()
    key = bearer(authorization) or query_token
    if key is not None:
        owner = await auth.store.write(lambda conn: accounts.lookup_key(conn, key, now))
        if owner is None:
            return None
        if owner.user is None:
            return Principal("admin.token", "admin", owner.scope, "key", key_id=owner.id)
        effective = roles.effective_scope(owner.scope, owner.user.role)
        return Principal(
            owner.user.username, owner.user.role, effective, "key", owner.user.id, key_id=owner.id
        )
    if cookie:
        session = await auth.store.write(lambda conn: accounts.touch_session(conn, cookie, now))
        if session is None:
            return None
        user = session.user
        return Principal(
            user.username,
            user.role,
            accounts.ROLE_SCOPE[user.role],
            "session",
            user.id,
            session.id,
            session.csrf_token,
        )
    return None


async def needs_setup() -> bool:
    """True while the node has no admin account (request context of an installed app)."""
    from quart import current_app

    auth = auth_of(current_app)  # type: ignore[arg-type]
    return not await auth.store.read(accounts.has_admin)


async def _csrf_ok(principal: Principal) -> bool:
    given = request.headers.get("X-CSRF-Token")
    if given is None and request.mimetype in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        given = (await request.form).get("csrf_token")
    expected = principal.csrf or ""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def install(app: QuartTrio, auth: WebAuth) -> None:
    """Install the auth layer on ``app``: principal resolution and checks before every request
    and WebSocket, table preparation before serving, template globals for pages."""
    app.extensions["hathd.auth"] = auth
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["current_principal"] = current_principal

    @app.before_serving
    async def prepare() -> None:
        await auth.prepare()

    @app.before_request
    async def check() -> Response | Any | None:
        refusal = await decide()
        if refusal is not None and request.method not in SAFE_METHODS:
            # read the request's body before refusing it: an answer sent while the body is
            # still arriving can leave hypercorn's keep-alive connection waiting, and the
            # client's next request on it hangs (bounded by MAX_CONTENT_LENGTH)
            await request.get_data(cache=False)
        return refusal

    async def decide() -> Response | Any | None:
        if (
            request.method not in SAFE_METHODS
            and bearer(request.headers.get("Authorization")) is None
            and not same_origin(request.headers)
        ):
            return error(403, "origin", "cross-origin request refused")
        view = app.view_functions.get(request.endpoint or "")
        needed = _needed(view, request)
        if needed == roles.PUBLIC:
            g.principal = await _optional(auth)
            return None
        principal = await resolve(
            auth,
            request.scope,
            request.headers.get("Authorization"),
            None,
            request.cookies.get(COOKIE),
        )
        g.principal = principal
        page = view is not None and getattr(view, _PAGE_ATTR, False)
        if principal is None:
            if page:
                fresh = not await auth.store.read(accounts.has_admin)
                return redirect("/setup" if fresh else "/login")
            reply = error(401, "unauthenticated", "missing or wrong bearer token")
            reply.headers["WWW-Authenticate"] = 'Bearer realm="hathd"'
            return reply
        if needed is None:
            return None  # routing answers 404/405 to an authenticated caller
        if not accounts.scope_allows(principal.scope, needed):
            if page:
                body = roles.refused_page(principal.role, needed)
                return Response(body, status=403, mimetype="text/html")
            return error(403, "scope", f"this needs the {needed} scope; yours is {principal.scope}")
        if (
            principal.via == "session"
            and request.method not in SAFE_METHODS
            and not await _csrf_ok(principal)
        ):
            return error(403, "csrf", "missing or wrong CSRF token")
        return None

    @app.before_websocket
    async def check_ws() -> Response | None:
        cookie = websocket.cookies.get(COOKIE)
        authorization = websocket.headers.get("Authorization")
        query_token = websocket.args.get("token")
        if cookie and not (authorization or query_token) and not same_origin(websocket.headers):
            return error(403, "origin", "cross-origin WebSocket refused")
        principal = await resolve(auth, websocket.scope, authorization, query_token, cookie)
        g.principal = principal
        if principal is None:
            return error(401, "unauthenticated", "missing or wrong bearer token")
        rule = websocket.url_rule.rule if websocket.url_rule is not None else None
        needed = (roles.route_scope("WS", rule) if rule is not None else None) or "read"
        if needed != roles.PUBLIC and not accounts.scope_allows(principal.scope, needed):
            return error(403, "scope", f"this needs the {needed} scope; yours is {principal.scope}")
        return None


def _needed(view: object, req: Any) -> str | None:
    """The scope (or ``public``) the matched route needs: its row of
    :data:`hathd.web.roles.ROUTES`, else its decorator's mark, else ``read`` for safe methods
    and ``control`` for others; None when no route matched (404/405)."""
    if view is None:
        return None
    rule = req.url_rule.rule if req.url_rule is not None else None
    found = roles.route_scope(req.method, rule) if rule is not None else None
    if found is not None:
        return found
    if getattr(view, _PUBLIC_ATTR, False) or (req.endpoint or "").split(".")[-1] == "static":
        return roles.PUBLIC
    marked = getattr(view, _SCOPE_ATTR, None)
    if isinstance(marked, str):
        return marked
    return "read" if req.method in SAFE_METHODS else "control"


async def _optional(auth: WebAuth) -> Principal | None:
    """The principal on a public route, when it presents one (never refused here)."""
    return await resolve(
        auth,
        request.scope,
        request.headers.get("Authorization"),
        None,
        request.cookies.get(COOKIE),
    )
