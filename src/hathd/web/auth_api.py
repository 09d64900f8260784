"""JSON routes of accounts: setup, login, logout, the caller, API keys and sessions.

- ``POST /api/v1/auth/setup`` ``{"password", "setup_code"?}`` — claims a fresh node: 201 with
  a session cookie. From a non-local address (see :func:`hathd.web.auth.is_local_request`)
  the one-time code of ``<state>/setup-code`` is required (403 ``setup_code``; wrong codes
  count towards the lockout of the address, as failed logins do); once an admin exists, 409
  ``already_set_up``.
- ``POST /api/v1/auth/login`` ``{"username"?, "password"}`` — 200 with a session cookie; 401
  ``bad_credentials``; 429 ``locked_out`` with ``Retry-After`` (seconds) after repeated
  failures from the same address.
- ``POST /api/v1/auth/logout`` — revokes the caller's session and clears the cookie.
- ``GET /api/v1/auth/me`` — ``{"user", "role", "scope", "via", "csrf_token"}``.
- ``POST /api/v1/auth/password`` ``{"current_password", "new_password"}`` — changes the
  caller's password and ends the user's other sessions: ``{"ok": true, "sessions_ended": n}``;
  403 ``bad_credentials``. Over the unix socket (recovery on the host) ``current_password`` is
  not asked and ``username`` (default ``admin``) names the account.
- ``GET/POST /api/v1/auth/keys``, ``DELETE /api/v1/auth/keys/<id>`` — API keys (admin scope);
  a new key is in the POST answer only. ``POST {"name", "scope", "user"?}`` makes a key of
  ``user`` (default: the caller); its scope may not exceed that user's role (400
  ``scope_exceeds_role``), and at every use it acts with the smaller of the two.
- ``GET /api/v1/auth/sessions``, ``DELETE /api/v1/auth/sessions/<id>`` — live sessions.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

import trio
from quart import Blueprint, Response, request

from hathd.web import accounts
from hathd.web.auth import (
    COOKIE,
    Principal,
    WebAuth,
    client_address,
    current_principal,
    error,
    is_local_request,
    public,
    require,
)

MIN_PASSWORD: int = 10
"""Shortest password accepted, characters (NIST SP 800-63B §5.1.1.2 asks for at least 8)."""

MAX_PASSWORD: int = 1024
"""Longest password accepted, characters (bounds the hashing work of one request)."""

_DUMMY_HASH = accounts.hash_password("not a password of anyone")


async def _json_body() -> dict[str, Any] | Response:
    """The request's JSON object, or a 400 reply."""
    raw = await request.get_data(as_text=False)
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        return error(400, "bad_request", "the body must be a JSON object")
    if not isinstance(body, dict):
        return error(400, "bad_request", "the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, default: str | None = None) -> str | None:
    """``body[name]`` when it is a string that UTF-8 can encode, else None (JSON may escape a
    lone surrogate, which can be neither hashed nor stored)."""
    value = body.get(name, default)
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _session_reply(
    auth: WebAuth, user: accounts.User, new: accounts.NewSession, status: int
) -> Response:
    body = {"user": user.username, "role": user.role, "csrf_token": new.csrf_token}
    reply = Response(json.dumps(body), status=status, mimetype="application/json")
    reply.set_cookie(
        COOKIE,
        new.token,
        max_age=int(accounts.SESSION_LIFETIME),
        httponly=True,
        samesite="Strict",
        secure=request.scheme == "https",
        path="/",
    )
    return reply


def blueprint(auth: WebAuth) -> Blueprint:
    """The auth routes, bound to ``auth``."""
    bp = Blueprint("auth", __name__)

    async def start_session(user: accounts.User) -> accounts.NewSession:
        ip = client_address(request.scope)
        user_agent = request.headers.get("User-Agent", "")
        now = auth.clock()
        return await auth.store.write(
            lambda conn: accounts.create_session(conn, user.id, ip, user_agent, now)
        )

    @bp.post("/api/v1/auth/setup")
    @public
    async def setup() -> Response:
        body = await _json_body()
        if isinstance(body, Response):
            return body
        if await auth.store.read(accounts.has_admin):
            return error(409, "already_set_up", "this node already has an admin")
        if not is_local_request(request.scope, request.headers):
            address = client_address(request.scope)
            now = auth.clock()
            wait = await auth.store.read(lambda conn: accounts.locked_for(conn, address, now))
            if wait > 0:
                return _locked(wait)
            given = _text(body, "setup_code") or ""
            expected = await trio.to_thread.run_sync(_read_code, auth)
            if (
                not expected
                or not given
                or not hmac.compare_digest(given.encode(), expected.encode())
            ):
                await auth.store.write(lambda conn: accounts.record_failure(conn, address, now))
                return error(
                    403,
                    "setup_code",
                    "from a remote address, setup needs the code that `hathd run` printed "
                    "(also in the file setup-code of the state directory)",
                )
        password = _text(body, "password")
        if password is None or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            return error(
                400,
                "bad_password",
                f"password: {MIN_PASSWORD} to {MAX_PASSWORD} characters",
            )
        hashed = await trio.to_thread.run_sync(accounts.hash_password, password)
        now = auth.clock()
        user_id = await auth.store.write(
            lambda conn: accounts.create_first_admin(conn, "admin", hashed, now)
        )
        if user_id is None:
            return error(409, "already_set_up", "this node already has an admin")
        await trio.to_thread.run_sync(_remove_code, auth)
        user = accounts.User(user_id, "admin", "admin", hashed)
        return _session_reply(auth, user, await start_session(user), 201)

    @bp.post("/api/v1/auth/login")
    @public
    async def login() -> Response:
        body = await _json_body()
        if isinstance(body, Response):
            return body
        address = client_address(request.scope)
        now = auth.clock()
        wait = await auth.store.read(lambda conn: accounts.locked_for(conn, address, now))
        if wait > 0:
            return _locked(wait)
        username = _text(body, "username", "admin")
        password = _text(body, "password")
        if username is None or password is None or len(password) > MAX_PASSWORD:
            return error(400, "bad_request", "username and password must be strings")
        user = await auth.store.read(lambda conn: accounts.user_by_name(conn, username))
        stored = user.password_hash if user else _DUMMY_HASH
        ok = await trio.to_thread.run_sync(accounts.verify_password, stored, password)
        if user is None or not ok:
            now = auth.clock()
            delay = await auth.store.write(lambda conn: accounts.record_failure(conn, address, now))
            reply = error(401, "bad_credentials", "wrong username or password")
            if delay > 0:
                reply.headers["Retry-After"] = str(max(1, round(delay)))
            return reply
        await auth.store.write(lambda conn: accounts.clear_failures(conn, address))
        return _session_reply(auth, user, await start_session(user), 200)

    @bp.post("/api/v1/auth/logout")
    @require("read")
    async def logout() -> Response:
        principal = _principal()
        if principal.session_id is not None:
            session_id = principal.session_id
            await auth.store.write(lambda conn: accounts.revoke_session(conn, session_id, None))
        reply = Response(json.dumps({"ok": True}), mimetype="application/json")
        reply.delete_cookie(COOKIE, path="/", httponly=True, samesite="Strict")
        return reply

    @bp.get("/api/v1/auth/me")
    @require("read")
    async def me() -> dict[str, Any]:
        principal = _principal()
        return {
            "user": principal.username,
            "role": principal.role,
            "scope": principal.scope,
            "via": principal.via,
            "csrf_token": principal.csrf or "",
        }

    @bp.post("/api/v1/auth/password")
    @require("read")
    async def change_password() -> Response | dict[str, Any]:
        body = await _json_body()
        if isinstance(body, Response):
            return body
        principal = _principal()
        new_password = _text(body, "new_password")
        if new_password is None or not MIN_PASSWORD <= len(new_password) <= MAX_PASSWORD:
            return error(
                400, "bad_password", f"new_password: {MIN_PASSWORD} to {MAX_PASSWORD} characters"
            )
        if principal.via == "socket":  # recovery from the host: name the account
            username = _text(body, "username", "admin") or ""
            user = await auth.store.read(lambda conn: accounts.user_by_name(conn, username))
        else:
            uid = principal.user_id
            user = (
                await auth.store.read(lambda conn: accounts.user_by_id(conn, uid))
                if uid is not None
                else None
            )
            current = _text(body, "current_password") or ""
            if user is None or not await trio.to_thread.run_sync(
                accounts.verify_password, user.password_hash, current
            ):
                return error(403, "bad_credentials", "current_password is wrong")
        if user is None:
            return error(404, "not_found", "no such account")
        hashed = await trio.to_thread.run_sync(accounts.hash_password, new_password)
        keep = principal.session_id
        target = user.id
        ended = await auth.store.write(
            lambda conn: accounts.set_password(conn, target, hashed, keep)
        )
        return {"ok": True, "sessions_ended": ended}

    @bp.get("/api/v1/auth/keys")
    @require("admin")
    async def keys() -> dict[str, Any]:
        return {"keys": await auth.store.read(accounts.list_keys)}

    @bp.post("/api/v1/auth/keys")
    @require("admin")
    async def create_key() -> Response | tuple[dict[str, Any], int]:
        body = await _json_body()
        if isinstance(body, Response):
            return body
        name = _text(body, "name")
        scope = _text(body, "scope")
        if not name or len(name) > 100:
            return error(400, "bad_request", "name: a string of 1 to 100 characters")
        if scope not in accounts.SCOPES:
            return error(400, "bad_request", f"scope: one of {', '.join(accounts.SCOPES)}")
        for_user = body.get("user")
        if for_user is not None and not isinstance(for_user, str):
            return error(400, "bad_request", "user: the username who owns the key")
        owner = _principal().user_id
        owner_role = _principal().role
        now = auth.clock()

        def store(conn: Any) -> tuple[str, str, str | None] | tuple[int, str, str]:
            user_id = owner
            role: str | None = owner_role
            if for_user is not None:
                found = accounts.user_by_name(conn, for_user)
                if found is None:
                    return 404, "unknown_user", f"no user {for_user!r}"
                user_id, role = found.id, found.role
            elif user_id is None:  # the socket or the node token: the key is the admin's
                admin = conn.execute(
                    "SELECT id FROM users WHERE role = 'admin' ORDER BY id LIMIT 1"
                ).fetchone()
                user_id = admin[0] if admin else None
            if role is not None and not accounts.scope_allows(accounts.ROLE_SCOPE[role], scope):
                most = accounts.ROLE_SCOPE[role]
                return (
                    400,
                    "scope_exceeds_role",
                    f"a key of a {role} can have the scope {most} at most",
                )
            key_id, key = accounts.create_key(conn, user_id, name, scope, now)
            user = accounts.user_by_id(conn, user_id) if user_id is not None else None
            return key_id, key, user.username if user else None

        made = await auth.store.write(store)
        if isinstance(made[0], int):
            return error(made[0], str(made[1]), str(made[2]))
        key_id, key, username = made
        return {"id": key_id, "name": name, "scope": scope, "key": key, "user": username}, 201

    @bp.delete("/api/v1/auth/keys/<key_id>")
    @require("admin")
    async def revoke_key(key_id: str) -> Response | dict[str, Any]:
        if not await auth.store.write(lambda conn: accounts.revoke_key(conn, key_id)):
            return error(404, "not_found", f"no key {key_id}")
        return {"ok": True}

    @bp.get("/api/v1/auth/sessions")
    @require("admin")
    async def sessions() -> dict[str, Any]:
        now = auth.clock()
        current = _principal().session_id
        rows = await auth.store.read(lambda conn: accounts.list_sessions(conn, now))
        for row in rows:
            row["current"] = row["id"] == current
        return {"sessions": rows}

    @bp.delete("/api/v1/auth/sessions/<session_id>")
    @require("admin")
    async def revoke_session(session_id: str) -> Response | dict[str, Any]:
        if not await auth.store.write(lambda conn: accounts.revoke_session(conn, session_id, None)):
            return error(404, "not_found", f"no live session {session_id}")
        return {"ok": True}

    return bp


def _principal() -> Principal:
    principal = current_principal()
    assert principal is not None  # the before_request check let the request in
    return principal


def _locked(wait: float) -> Response:
    seconds = max(1, round(wait + 0.49))
    reply = error(
        429,
        "locked_out",
        f"too many failed logins from this address; retry in {seconds} s",
        retry_after=seconds,
    )
    reply.headers["Retry-After"] = str(seconds)
    return reply


def _read_code(auth: WebAuth) -> str:
    try:
        return auth.setup_code_path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _remove_code(auth: WebAuth) -> None:
    auth.setup_code_path.unlink(missing_ok=True)
