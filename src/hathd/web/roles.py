"""Who may call what: one table from every route of the admin app to the smallest scope it
needs, and the roles of the accounts.

A user's role gives the widest scope the user holds (:data:`ROLE_SCOPE`):

=========  =========  =====================================================================
role       scope      may
=========  =========  =====================================================================
viewer     read       see every page but settings, users and the log; ask for a series or a
                      story (a *request*, approved by an operator or an admin)
operator   control    also the queue, the library, uploads and transfers, approve requests,
                      read the log
admin      admin      also settings, API keys, sessions and users
=========  =========  =====================================================================

An API key has its own scope and belongs to a user; the scope it acts with is the smaller of
the two (:func:`effective_scope`), looked up at every request, so demoting a user takes
effect on the next request of their sessions and keys alike.

:data:`ROUTES` keys are ``(method, rule)`` with the rule as the app's URL map spells it
(``"WS"`` for the WebSocket); the value is a scope, or :data:`PUBLIC` for routes open to
anyone. ``HEAD`` is answered like ``GET``. A route missing from the table falls back to its
decorator (:func:`hathd.web.auth.require`, :func:`~hathd.web.auth.public`) or to ``read``
for ``GET`` and ``control`` otherwise; tests/web/test_roles.py fails for any route of the
app that the table does not name, so the fallback only keeps a new plugin route usable until
its row is added.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Final, Literal

from hathd.web.accounts import ROLE_SCOPE, SCOPES, Scope, scope_allows

__all__ = [
    "PUBLIC",
    "ROLES",
    "ROLE_SCOPE",
    "ROUTES",
    "effective_scope",
    "refused_page",
    "role_allows",
    "route_scope",
]

PUBLIC: Final = "public"
"""The mark of a route that needs no credentials."""

type Needed = Scope | Literal["public"]

ROLES: Final[tuple[str, ...]] = ("viewer", "operator", "admin")
"""Roles, weakest first."""

_READ: Final[Needed] = "read"
_CONTROL: Final[Needed] = "control"
_ADMIN: Final[Needed] = "admin"

ROUTES: Final[Mapping[tuple[str, str], Needed]] = {
    # core and assets
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/static/<path:filename>"): PUBLIC,
    ("GET", "/api/v1/status"): _READ,
    ("GET", "/metrics"): _READ,
    ("WS", "/api/v1/ws"): _READ,
    # pages
    ("GET", "/setup"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("GET", "/"): _READ,
    ("GET", "/queue"): _READ,
    ("GET", "/library"): _READ,
    ("GET", "/library/<key>"): _READ,
    ("GET", "/covers/<key>"): _READ,
    ("GET", "/work"): _READ,
    ("GET", "/requests"): _READ,
    ("GET", "/log"): _CONTROL,
    ("GET", "/users"): _ADMIN,
    ("GET", "/settings"): _ADMIN,
    # accounts
    ("POST", "/api/v1/auth/setup"): PUBLIC,
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): _READ,
    ("GET", "/api/v1/auth/me"): _READ,
    ("POST", "/api/v1/auth/password"): _READ,
    ("GET", "/api/v1/auth/keys"): _ADMIN,
    ("POST", "/api/v1/auth/keys"): _ADMIN,
    ("DELETE", "/api/v1/auth/keys/<key_id>"): _ADMIN,
    ("GET", "/api/v1/auth/sessions"): _ADMIN,
    ("DELETE", "/api/v1/auth/sessions/<session_id>"): _ADMIN,
    ("GET", "/api/v1/users"): _ADMIN,
    ("POST", "/api/v1/users"): _ADMIN,
    ("PATCH", "/api/v1/users/<username>"): _ADMIN,
    ("DELETE", "/api/v1/users/<username>"): _ADMIN,
    # requests and the audit trail
    ("GET", "/api/v1/requests"): _READ,
    ("POST", "/api/v1/requests"): _READ,
    ("POST", "/api/v1/requests/<int:request_id>/approve"): _CONTROL,
    ("POST", "/api/v1/requests/<int:request_id>/reject"): _CONTROL,
    ("GET", "/api/v1/audit"): _CONTROL,
    # configuration (settings): admin only, reading included
    ("GET", "/api/v1/config"): _ADMIN,
    ("GET", "/api/v1/config/restart"): _ADMIN,
    ("POST", "/api/v1/config/validate"): _ADMIN,
    ("PUT", "/api/v1/config"): _ADMIN,
    ("GET", "/api/v1/config/backups"): _ADMIN,
    ("POST", "/api/v1/config/backups"): _ADMIN,
    ("POST", "/api/v1/config/backups/<backup_id>/restore"): _ADMIN,
    ("DELETE", "/api/v1/config/backups/<backup_id>"): _ADMIN,
    # the job engine: the queue
    ("GET", "/api/v1/jobs"): _READ,
    ("POST", "/api/v1/jobs"): _CONTROL,
    ("DELETE", "/api/v1/jobs"): _CONTROL,
    ("GET", "/api/v1/jobs/<job_id>"): _READ,
    ("POST", "/api/v1/jobs/<job_id>/pause"): _CONTROL,
    ("POST", "/api/v1/jobs/<job_id>/resume"): _CONTROL,
    ("POST", "/api/v1/jobs/<job_id>/retry"): _CONTROL,
    ("POST", "/api/v1/jobs/<job_id>/move"): _CONTROL,
    ("DELETE", "/api/v1/jobs/<job_id>"): _CONTROL,
    ("GET", "/api/v1/queue"): _READ,
    ("POST", "/api/v1/queue/pause"): _CONTROL,
    ("POST", "/api/v1/queue/resume"): _CONTROL,
    ("POST", "/api/v1/queue/reorder"): _CONTROL,
    # H@H node and galleries
    ("GET", "/api/v1/hath/status"): _READ,
    ("POST", "/api/v1/hath/verify"): _CONTROL,
    ("GET", "/api/v1/hath/download"): _READ,
    ("POST", "/api/v1/hath/download"): _CONTROL,
    # seedbox transfers
    ("GET", "/api/v1/q4d/status"): _READ,
    ("GET", "/api/v1/q4d/rejected"): _READ,
    # fanfiction
    ("GET", "/api/v1/fanfic/status"): _READ,
    ("POST", "/api/v1/fanfic/stories"): _CONTROL,
    # uploads
    ("GET", "/api/v1/uploads"): _READ,
    ("POST", "/api/v1/uploads"): _CONTROL,
    ("GET", "/api/v1/uploads/<batch_id>"): _READ,
    ("GET", "/api/v1/posts"): _READ,
    ("GET", "/api/v1/posts/<post_id>"): _READ,
    ("GET", "/api/v1/recipes"): _READ,
    # the anime library (a search changes nothing: viewers look up what to request)
    ("GET", "/api/v1/anime"): _READ,
    ("POST", "/api/v1/anime"): _CONTROL,
    ("POST", "/api/v1/anime/search"): _READ,
    ("GET", "/api/v1/anime/missing"): _READ,
    ("GET", "/api/v1/anime/scheduler"): _READ,
    ("PUT", "/api/v1/anime/scheduler"): _CONTROL,
    ("POST", "/api/v1/anime/rescan"): _CONTROL,
    ("GET", "/api/v1/anime/<key>"): _READ,
    ("POST", "/api/v1/anime/<key>/queue"): _CONTROL,
    ("POST", "/api/v1/anime/<key>/follow"): _CONTROL,
    # notifications and media-server refresh (a test message goes out to every configured
    # target, so it is the admin's)
    ("POST", "/api/v1/notify/test"): _ADMIN,
    ("GET", "/api/v1/notify/status"): _READ,
    ("GET", "/api/v1/media-servers/status"): _READ,
}
"""Every route of the admin app → the smallest scope that may call it (or :data:`PUBLIC`)."""


def route_scope(method: str, rule: str) -> Needed | None:
    """The table's entry for ``method`` (``HEAD`` counts as ``GET``) on ``rule``, or None
    when the table has no row for it."""
    return ROUTES.get(("GET" if method == "HEAD" else method, rule))


def effective_scope(key_scope: str, role: str) -> Scope:
    """The scope a key of ``key_scope`` owned by a user of ``role`` acts with: the smaller of
    the key's scope and the role's (:data:`ROLE_SCOPE`)."""
    return SCOPES[min(SCOPES.index(key_scope), SCOPES.index(ROLE_SCOPE[role]))]


def role_allows(role: str, needed: str) -> bool:
    """True when a user of ``role`` may call a route needing ``needed`` (a scope or
    :data:`PUBLIC`)."""
    return needed == PUBLIC or scope_allows(ROLE_SCOPE[role], needed)


def refused_page(role: str, needed: str) -> str:
    """The small HTML page a logged-in user sees on a page their role may not open (403)."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>Not allowed · hathd</title><link rel="stylesheet" href="/static/hathd.css">'
        '</head><body><main id="main"><h1>Not allowed</h1>'
        f'<p id="refused">Your role ({html.escape(role)}) cannot open this page: it needs the '
        f"{html.escape(needed)} scope. Ask an admin if you need it.</p>"
        '<p><a href="/">Back to the overview</a></p></main></body></html>'
    )
