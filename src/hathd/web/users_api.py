"""JSON routes of the household accounts (admin scope, see :data:`hathd.web.roles.ROUTES`).

- ``GET /api/v1/users`` → ``{"users": [{"id", "username", "role", "created", "sessions",
  "keys"}]}``.
- ``POST /api/v1/users`` ``{"username", "password", "role"}`` → 201 ``{"id", "username",
  "role"}``; 409 ``user_exists``.
- ``PATCH /api/v1/users/<username>`` ``{"role"?, "password"?}`` → ``{"username", "role",
  "sessions_ended"}``: a new role applies from the caller's next request (sessions and keys
  stay, their scope follows the role); a new password ends every session of the user.
- ``DELETE /api/v1/users/<username>`` → ``{"ok": true, "sessions": n, "keys": n}``: the user's
  sessions and API keys are revoked, then the account removed.

Removing or demoting the last admin is refused with 409 ``last_admin``; an unknown user is 404
``unknown_user``; bad input 400 ``invalid_input`` naming its ``field``.
"""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint, Response

from hathd.errors import AccountError, InvalidInput, LastAdmin, UnknownUser, UserExists
from hathd.jsonbody import read_object
from hathd.web import accounts, users
from hathd.web.auth import WebAuth, error

MIN_PASSWORD = 10
"""Shortest password accepted, characters (as for the admin's, see :mod:`hathd.web.auth_api`)."""

MAX_PASSWORD = 1024
"""Longest password accepted, characters."""


def check_password(value: object, field: str = "password") -> str:
    """``value`` when it is a password of :data:`MIN_PASSWORD` to :data:`MAX_PASSWORD`
    characters.

    :raises InvalidInput: (``field``) otherwise.
    """
    if not isinstance(value, str) or not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise InvalidInput(field, f"{MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return value


def _status(exc: AccountError) -> int:
    if isinstance(exc, UnknownUser):
        return 404
    if isinstance(exc, UserExists | LastAdmin):
        return 409
    return 400


def blueprint(auth: WebAuth) -> Blueprint:
    """The user routes over ``auth``'s store."""
    bp = Blueprint("users_api", __name__)

    @bp.errorhandler(AccountError)
    async def refused(exc: AccountError) -> Response:
        return error(_status(exc), exc.code, str(exc))

    @bp.errorhandler(InvalidInput)
    async def invalid(exc: InvalidInput) -> Response:
        return error(400, exc.code, str(exc), field=exc.field)

    @bp.get("/api/v1/users")
    async def list_users() -> dict[str, Any]:
        now = auth.clock()
        return {"users": await auth.store.read(lambda conn: users.list_users(conn, now))}

    @bp.post("/api/v1/users")
    async def add_user() -> tuple[dict[str, Any], int]:
        body = await read_object(required=False)
        username = users.check_username(body.get("username"))
        role = users.check_role(body.get("role", "viewer"))
        password = check_password(body.get("password"))
        hashed = await trio.to_thread.run_sync(accounts.hash_password, password)
        now = auth.clock()
        user_id = await auth.store.write(
            lambda conn: users.add_user(conn, username, role, hashed, now)
        )
        return {"id": user_id, "username": username, "role": role}, 201

    @bp.patch("/api/v1/users/<username>")
    async def change_user(username: str) -> dict[str, Any]:
        body = await read_object(required=False)
        unknown = sorted(set(body) - {"role", "password"})
        if unknown:
            raise InvalidInput(unknown[0], "unknown key (role and password can be changed)")
        if not body:
            raise InvalidInput("body", "give a new role or password")
        role = users.check_role(body["role"]) if "role" in body else None
        password = check_password(body["password"]) if "password" in body else None
        hashed = (
            await trio.to_thread.run_sync(accounts.hash_password, password)
            if password is not None
            else None
        )

        def change(conn: Any) -> dict[str, Any]:
            before = users.set_role(conn, username, role) if role is not None else None
            ended = users.change_password(conn, username, hashed) if hashed is not None else 0
            current = role or (before.role if before else None)
            if current is None:
                found = accounts.user_by_name(conn, username)
                current = found.role if found else None
            return {"username": username, "role": current, "sessions_ended": ended}

        result: dict[str, Any] = await auth.store.write(change)
        return result

    @bp.delete("/api/v1/users/<username>")
    async def remove_user(username: str) -> dict[str, Any]:
        revoked = await auth.store.write(lambda conn: users.remove_user(conn, username))
        return {"ok": True, **revoked}

    return bp
