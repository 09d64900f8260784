"""Household accounts in the store: add, list, change the role or password of, and remove users.

Each function takes a :class:`sqlite3.Connection` and runs inside ``Store.write`` (or
``Store.read`` for :func:`list_users`), so a check and the change it guards happen in one
transaction of the single writer: two admins demoting each other at the same moment cannot
both succeed and leave the node without an admin.

The tables are :mod:`hathd.web.accounts`' (``users``, ``sessions``, ``api_keys``).
"""

from __future__ import annotations

import re
import sqlite3
from typing import Final

from hathd.errors import InvalidInput, LastAdmin, UnknownUser, UserExists
from hathd.web.accounts import SESSION_IDLE, User, set_password, user_by_name
from hathd.web.roles import ROLES

USERNAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A username: 1 to 64 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or digit."""


def check_username(username: object) -> str:
    """``username`` when it matches :data:`USERNAME`.

    :raises InvalidInput: (field ``username``) otherwise.
    """
    if not isinstance(username, str) or USERNAME.fullmatch(username) is None:
        raise InvalidInput(
            "username", "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return username


def check_role(role: object) -> str:
    """``role`` when it is one of :data:`hathd.web.roles.ROLES`.

    :raises InvalidInput: (field ``role``) otherwise.
    """
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidInput("role", f"one of {', '.join(ROLES)}")
    return role


def _require(conn: sqlite3.Connection, username: str) -> User:
    user = user_by_name(conn, username)
    if user is None:
        raise UnknownUser(f"no user {username!r}")
    return user


def _admins(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM users WHERE role = 'admin'").fetchone()[0])


def list_users(conn: sqlite3.Connection, now: float) -> list[dict[str, object]]:
    """Every account, by name: ``{"id", "username", "role", "created", "sessions", "keys"}``
    (live sessions and keys not revoked)."""
    rows = conn.execute(
        "SELECT u.id, u.username, u.role, u.created,"
        " (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.revoked = 0"
        "  AND s.expires > ? AND s.last_seen > ?),"
        " (SELECT count(*) FROM api_keys k WHERE k.user_id = u.id AND k.revoked = 0)"
        " FROM users u ORDER BY u.username",
        (now, now - SESSION_IDLE),
    ).fetchall()
    names = ("id", "username", "role", "created", "sessions", "keys")
    return [dict(zip(names, row, strict=True)) for row in rows]


def add_user(
    conn: sqlite3.Connection, username: str, role: str, password_hash: str, now: float
) -> int:
    """Create an account; returns its id.

    :raises UserExists: the name is taken (compared without regard to case).
    """
    taken = conn.execute(
        "SELECT username FROM users WHERE username = ? COLLATE NOCASE", (username,)
    ).fetchone()
    if taken is not None:
        raise UserExists(f"user {taken[0]!r} exists already")
    cur = conn.execute(
        "INSERT INTO users(username, role, password_hash, created) VALUES (?, ?, ?, ?)",
        (username, role, password_hash, now),
    )
    return int(cur.lastrowid or 0)


def set_role(conn: sqlite3.Connection, username: str, role: str) -> User:
    """Give ``username`` the role ``role``; returns the account as it was before.

    Sessions and keys stay: their scope follows the role from the next request on.

    :raises UnknownUser: no such account.
    :raises LastAdmin: the account is the last admin and ``role`` is not ``admin``.
    """
    user = _require(conn, username)
    if user.role == "admin" and role != "admin" and _admins(conn) <= 1:
        raise LastAdmin(f"{username} is the last admin: make another user admin first")
    conn.execute("UPDATE users SET role = ? WHERE id = ?", (role, user.id))
    return user


def change_password(conn: sqlite3.Connection, username: str, password_hash: str) -> int:
    """Store a new password hash for ``username`` and end all of the user's sessions;
    returns how many sessions ended.

    :raises UnknownUser: no such account.
    """
    user = _require(conn, username)
    return set_password(conn, user.id, password_hash, None)


def remove_user(conn: sqlite3.Connection, username: str) -> dict[str, int]:
    """Delete ``username`` after revoking their sessions and API keys; returns
    ``{"sessions": n, "keys": n}`` revoked.

    :raises UnknownUser: no such account.
    :raises LastAdmin: the account is the last admin.
    """
    user = _require(conn, username)
    if user.role == "admin" and _admins(conn) <= 1:
        raise LastAdmin(f"{username} is the last admin and cannot be removed")
    sessions = conn.execute(
        "UPDATE sessions SET revoked = 1 WHERE user_id = ? AND revoked = 0", (user.id,)
    ).rowcount
    keys = conn.execute(
        "UPDATE api_keys SET revoked = 1 WHERE user_id = ? AND revoked = 0", (user.id,)
    ).rowcount
    conn.execute("DELETE FROM sessions WHERE user_id = ?", (user.id,))
    conn.execute("DELETE FROM api_keys WHERE user_id = ?", (user.id,))
    conn.execute("DELETE FROM users WHERE id = ?", (user.id,))
    return {"sessions": sessions, "keys": keys}
