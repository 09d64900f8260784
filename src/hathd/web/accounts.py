"""Accounts in the store: users, sessions, API keys and login failures.

Schema (component ``web``, applied by :func:`migrate`):

- ``users(id, username, role, password_hash, created)`` — ``role`` is ``admin``,
  ``operator`` or ``viewer``; this release creates one ``admin``. Passwords are hashed with
  Argon2id (argon2-cffi's :class:`argon2.PasswordHasher` defaults, RFC 9106).
- ``sessions(id, token_hash, user_id, csrf_token, created, last_seen, expires, ip, user_agent,
  revoked)`` — the cookie carries a 256-bit random token; only its SHA-256 is stored, so a
  leaked database does not leak live sessions. ``id`` is a separate public handle used to
  list and revoke sessions. Times are Unix seconds.
- ``api_keys(id, user_id, name, scope, key_hash, prefix, created, last_used, revoked)`` — a key
  is ``hathd_`` + 256 random bits (URL-safe base64), shown once; only its SHA-256 is stored (a
  slow hash is not needed for a key of that entropy). ``user_id`` is NULL for the node's own
  key (the ``admin.token`` file).
- ``login_failures(address, failures, last_failure, locked_until)`` — per client address.

Every function takes a :class:`sqlite3.Connection` and runs inside ``Store.write`` or
``Store.read``; none does I/O of its own besides SQL.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from typing import Final, Literal

import attrs
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hathd.store import Migration, Store

Role = Literal["admin", "operator", "viewer"]
Scope = Literal["read", "control", "admin"]

SCOPES: Final[tuple[Scope, ...]] = ("read", "control", "admin")
"""Scopes, weakest first: each includes the ones before it."""

ROLE_SCOPE: Final[dict[str, Scope]] = {"viewer": "read", "operator": "control", "admin": "admin"}
"""The widest scope a user of each role holds."""

TOKEN_KEY_ID: Final = "admin-token"
"""Id of the API key that stands for the ``admin.token`` file."""

SESSION_LIFETIME: Final = 7 * 24 * 3600.0
"""Seconds a session lives after login."""

SESSION_IDLE: Final = 24 * 3600.0
"""Seconds without a request after which a session ends."""

LOCKOUT_FREE: Final = 5
"""Failed logins per address allowed before a delay applies."""

LOCKOUT_MAX: Final = 900.0
"""The longest lockout, seconds."""

MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
        password_hash TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf_token TEXT NOT NULL,
        created REAL NOT NULL,
        last_seen REAL NOT NULL,
        expires REAL NOT NULL,
        ip TEXT NOT NULL,
        user_agent TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        scope TEXT NOT NULL CHECK (scope IN ('read', 'control', 'admin')),
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created REAL NOT NULL,
        last_used REAL,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE login_failures (
        address TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_failure REAL NOT NULL,
        locked_until REAL NOT NULL
    );
    """,
]

_hasher = PasswordHasher()


async def migrate(store: Store) -> None:
    """Create or upgrade the account tables."""
    await store.migrate("web", MIGRATIONS)


def digest(secret: str) -> str:
    """SHA-256 hex of a high-entropy secret (session token, API key)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    """Argon2id hash (PHC string) of ``password``; CPU- and memory-heavy, run it in a thread."""
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    """True when ``password`` matches the Argon2 ``stored`` hash; never raises on a mismatch."""
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def scope_allows(held: str, wanted: str) -> bool:
    """True when scope ``held`` includes ``wanted`` (``admin`` ⊇ ``control`` ⊇ ``read``)."""
    return SCOPES.index(held) >= SCOPES.index(wanted)


# -- users -------------------------------------------------------------------------------


@attrs.frozen
class User:
    """One account."""

    id: int
    username: str
    role: str
    password_hash: str


def has_admin(conn: sqlite3.Connection) -> bool:
    """True once an admin account exists (the node has been claimed)."""
    return conn.execute("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1").fetchone() is not None


def user_by_name(conn: sqlite3.Connection, username: str) -> User | None:
    row = conn.execute(
        "SELECT id, username, role, password_hash FROM users WHERE username = ?", (username,)
    ).fetchone()
    return User(*row) if row else None


def user_by_id(conn: sqlite3.Connection, user_id: int) -> User | None:
    row = conn.execute(
        "SELECT id, username, role, password_hash FROM users WHERE id = ?", (user_id,)
    ).fetchone()
    return User(*row) if row else None


def create_first_admin(
    conn: sqlite3.Connection, username: str, password_hash: str, now: float
) -> int | None:
    """Insert the first admin; returns its id, or None when an admin exists already (so two
    racing claims cannot both win: this runs inside the single writer's transaction)."""
    if has_admin(conn):
        return None
    cur = conn.execute(
        "INSERT INTO users(username, role, password_hash, created) VALUES (?, 'admin', ?, ?)",
        (username, password_hash, now),
    )
    return int(cur.lastrowid or 0)


def set_password(
    conn: sqlite3.Connection, user_id: int, password_hash: str, keep_session: str | None
) -> int:
    """Store a new password hash for ``user_id`` and revoke the user's sessions except
    ``keep_session``; returns how many sessions were revoked."""
    conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
    return conn.execute(
        "UPDATE sessions SET revoked = 1 WHERE user_id = ? AND revoked = 0 AND id IS NOT ?",
        (user_id, keep_session),
    ).rowcount


# -- sessions ----------------------------------------------------------------------------


@attrs.frozen
class NewSession:
    """A session just created: ``token`` goes into the cookie and is not kept anywhere."""

    id: str
    token: str
    csrf_token: str


@attrs.frozen
class Session:
    """A live session as found by its cookie token."""

    id: str
    user: User
    csrf_token: str


def create_session(
    conn: sqlite3.Connection, user_id: int, ip: str, user_agent: str, now: float
) -> NewSession:
    """Start a session of ``user_id`` from ``ip`` (``user_agent`` kept to 512 characters);
    sessions that ended (revoked, expired, idle) are deleted on the way."""
    conn.execute(
        "DELETE FROM sessions WHERE revoked = 1 OR expires <= ? OR last_seen <= ?",
        (now, now - SESSION_IDLE),
    )
    token = secrets.token_urlsafe(32)
    new = NewSession(
        id=secrets.token_urlsafe(12), token=token, csrf_token=secrets.token_urlsafe(32)
    )
    conn.execute(
        "INSERT INTO sessions(id, token_hash, user_id, csrf_token, created, last_seen, expires,"
        " ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new.id,
            digest(token),
            user_id,
            new.csrf_token,
            now,
            now,
            now + SESSION_LIFETIME,
            ip,
            user_agent[:512],
        ),
    )
    return new


def touch_session(conn: sqlite3.Connection, token: str, now: float) -> Session | None:
    """Find the live session of cookie ``token`` and record the activity; None when the token
    is unknown, revoked, expired or idle longer than :data:`SESSION_IDLE`."""
    row = conn.execute(
        "SELECT id, user_id, csrf_token, last_seen, expires FROM sessions"
        " WHERE token_hash = ? AND revoked = 0",
        (digest(token),),
    ).fetchone()
    if row is None or row[4] <= now or row[3] + SESSION_IDLE <= now:
        return None
    user = user_by_id(conn, row[1])
    if user is None:
        return None
    conn.execute("UPDATE sessions SET last_seen = ? WHERE id = ?", (now, row[0]))
    return Session(id=row[0], user=user, csrf_token=row[2])


def revoke_session(conn: sqlite3.Connection, session_id: str, user_id: int | None) -> bool:
    """Revoke one session (of ``user_id`` only, unless None = any); True when one was live."""
    sql = "UPDATE sessions SET revoked = 1 WHERE id = ? AND revoked = 0"
    params: tuple[object, ...] = (session_id,)
    if user_id is not None:
        sql += " AND user_id = ?"
        params += (user_id,)
    return conn.execute(sql, params).rowcount > 0


def list_sessions(conn: sqlite3.Connection, now: float) -> list[dict[str, object]]:
    """Live sessions, newest activity first."""
    rows = conn.execute(
        "SELECT s.id, u.username, s.created, s.last_seen, s.expires, s.ip, s.user_agent"
        " FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.revoked = 0 AND s.expires > ? AND s.last_seen > ?"
        " ORDER BY s.last_seen DESC",
        (now, now - SESSION_IDLE),
    ).fetchall()
    keys = ("id", "user", "created", "last_seen", "expires", "ip", "user_agent")
    return [dict(zip(keys, row, strict=True)) for row in rows]


# -- API keys ----------------------------------------------------------------------------


@attrs.frozen
class KeyOwner:
    """Who a presented API key belongs to."""

    id: str
    scope: str
    user: User | None


def new_key() -> str:
    """A fresh API key: ``hathd_`` + 43 URL-safe characters (256 bits)."""
    return "hathd_" + secrets.token_urlsafe(32)


def create_key(
    conn: sqlite3.Connection, user_id: int | None, name: str, scope: str, now: float
) -> tuple[str, str]:
    """Store a new key; returns ``(id, key)``. The key is not kept: show it once."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    key = new_key()
    key_id = secrets.token_hex(6)
    conn.execute(
        "INSERT INTO api_keys(id, user_id, name, scope, key_hash, prefix, created)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (key_id, user_id, name, scope, digest(key), key[:10], now),
    )
    return key_id, key


def register_token(conn: sqlite3.Connection, token: str, now: float) -> None:
    """Make the ``admin.token`` file's token the admin key :data:`TOKEN_KEY_ID` (replacing a
    previous token's hash, so a rotated file takes effect at the next start)."""
    conn.execute(
        "INSERT INTO api_keys(id, user_id, name, scope, key_hash, prefix, created)"
        " VALUES (?, NULL, 'admin.token', 'admin', ?, '', ?)"
        " ON CONFLICT(id) DO UPDATE SET key_hash = excluded.key_hash, revoked = 0",
        (TOKEN_KEY_ID, digest(token), now),
    )


def lookup_key(conn: sqlite3.Connection, key: str, now: float) -> KeyOwner | None:
    """The owner of a presented key (recording its use), or None when unknown or revoked."""
    row = conn.execute(
        "SELECT id, scope, user_id FROM api_keys WHERE key_hash = ? AND revoked = 0",
        (digest(key),),
    ).fetchone()
    if row is None:
        return None
    user = user_by_id(conn, row[2]) if row[2] is not None else None
    if row[2] is not None and user is None:
        return None
    conn.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (now, row[0]))
    return KeyOwner(id=row[0], scope=row[1], user=user)


def list_keys(conn: sqlite3.Connection) -> list[dict[str, object]]:
    """Keys not revoked, oldest first, without any secret."""
    rows = conn.execute(
        "SELECT k.id, k.name, k.scope, k.prefix, k.created, k.last_used, u.username"
        " FROM api_keys k LEFT JOIN users u ON u.id = k.user_id"
        " WHERE k.revoked = 0 ORDER BY k.created, k.id"
    ).fetchall()
    keys = ("id", "name", "scope", "prefix", "created", "last_used", "user")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def revoke_key(conn: sqlite3.Connection, key_id: str) -> bool:
    """Revoke key ``key_id``; True when a live key was revoked."""
    return (
        conn.execute(
            "UPDATE api_keys SET revoked = 1 WHERE id = ? AND revoked = 0", (key_id,)
        ).rowcount
        > 0
    )


# -- login lockout -----------------------------------------------------------------------


def lockout_delay(failures: int) -> float:
    """Seconds an address waits after ``failures`` consecutive failed logins: none for the
    first :data:`LOCKOUT_FREE`, then 1, 2, 4, … up to :data:`LOCKOUT_MAX`."""
    if failures < LOCKOUT_FREE:
        return 0.0
    return min(LOCKOUT_MAX, float(2 ** min(failures - LOCKOUT_FREE, 20)))


def locked_for(conn: sqlite3.Connection, address: str, now: float) -> float:
    """Seconds ``address`` must still wait before a login is tried (0 when free)."""
    row = conn.execute(
        "SELECT locked_until FROM login_failures WHERE address = ?", (address,)
    ).fetchone()
    return max(0.0, row[0] - now) if row else 0.0


def record_failure(conn: sqlite3.Connection, address: str, now: float) -> float:
    """Count a failed login from ``address``; returns the delay now imposed (seconds).

    Failures older than :data:`LOCKOUT_MAX` seconds are forgotten before counting (and
    such rows of every address are deleted).
    """
    conn.execute(
        "DELETE FROM login_failures WHERE last_failure < ? AND locked_until < ?",
        (now - LOCKOUT_MAX, now),
    )
    row = conn.execute(
        "SELECT failures, last_failure FROM login_failures WHERE address = ?", (address,)
    ).fetchone()
    failures = 1 if row is None or row[1] + LOCKOUT_MAX < now else row[0] + 1
    delay = lockout_delay(failures)
    conn.execute(
        "INSERT INTO login_failures(address, failures, last_failure, locked_until)"
        " VALUES (?, ?, ?, ?) ON CONFLICT(address) DO UPDATE SET failures = excluded.failures,"
        " last_failure = excluded.last_failure, locked_until = excluded.locked_until",
        (address, failures, now, now + delay),
    )
    return delay


def clear_failures(conn: sqlite3.Connection, address: str) -> None:
    """Forget the failures of ``address`` after a successful login."""
    conn.execute("DELETE FROM login_failures WHERE address = ?", (address,))
