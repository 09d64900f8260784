"""The web pages: server-rendered shells (Jinja2) whose live parts are filled by one vanilla
script, ``static/hathd.js``, from the JSON API and the event WebSocket.

Routes (all ``GET``; every page but ``/login`` and ``/setup`` needs a login, see
:func:`hathd.web.auth.login_required`):

- ``/`` — overview: each subsystem's state and reason, the H@H node, the queue counters.
- ``/setup`` — first run: set the admin password (loopback, or the one-time setup code).
- ``/login`` — the login form; logging out is a button in the navigation bar.
- ``/queue`` — pending (numbered, drag or keyboard reorder), active, completed and failed jobs.
- ``/library`` — the anime library's series grid (covers, missing counts), search and add.
- ``/library/<key>`` — one series: seasons and episodes to tick and queue, follow, rescan.
- ``/work`` — uploads, fanfiction and seedbox transfers: recent jobs, add a URL or a folder.
- ``/requests`` — ask for a series or a story; operators approve or reject.
- ``/log`` — the audit trail: who changed what (operators and admins).
- ``/users`` — household accounts and their roles (admins).
- ``/settings`` — the configuration with per-field errors, API keys, configuration backups
  (admins).

The navigation bar shows each user the pages their role may open.

Assets are vendored under ``static/`` (no CDN: a home server may be offline) and no page
carries inline script, so the Content-Security-Policy can say ``script-src 'self'``.
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, redirect, render_template
from quart.blueprints import BlueprintSetupState
from werkzeug.wrappers import Response as WerkzeugResponse

from hathd.runtime import Runtime
from hathd.web.accounts import scope_allows
from hathd.web.auth import current_principal, login_required, needs_setup, public
from hathd.web.roles import route_scope

HERE = Path(__file__).parent

NAV: tuple[tuple[str, str], ...] = (
    ("/", "Overview"),
    ("/queue", "Queue"),
    ("/library", "Library"),
    ("/work", "Uploads & transfers"),
    ("/requests", "Requests"),
    ("/log", "Log"),
    ("/users", "Users"),
    ("/settings", "Settings"),
)
"""The navigation bar: (path, label); each user sees the entries their role may open."""


def visible_nav() -> list[tuple[str, str]]:
    """The :data:`NAV` entries the caller's scope may open (see :data:`hathd.web.roles.ROUTES`)."""
    principal = current_principal()
    held = principal.scope if principal else None
    return [
        (path, label)
        for path, label in NAV
        if held is not None and scope_allows(held, route_scope("GET", path) or "read")
    ]


def blueprint(rt: Runtime) -> Blueprint:
    """The pages blueprint; templates and static files come from this package."""
    bp = Blueprint("pages", __name__, template_folder=str(HERE / "templates"))

    @bp.record_once
    def serve_assets(state: BlueprintSetupState) -> None:
        # the app already routes /static/<path> (Quart always adds it): point it at the assets
        state.app.static_folder = str(HERE / "static")

    async def page(template: str, path: str, title: str, **extra: str) -> str:
        return await render_template(template, nav=visible_nav(), active=path, title=title, **extra)

    @bp.get("/setup")
    @public
    async def setup() -> str | WerkzeugResponse:
        if not await needs_setup():
            return redirect("/login")
        return await page("setup.html", "/setup", "First run")

    @bp.get("/login")
    @public
    async def login() -> str | WerkzeugResponse:
        if await needs_setup():
            return redirect("/setup")
        return await page("login.html", "/login", "Log in")

    def logged_in_page(path: str, label: str) -> None:
        template = "overview.html" if path == "/" else f"{path.strip('/')}.html"

        async def show() -> str:
            return await page(template, path, label)

        name = template.removesuffix(".html")
        show.__name__ = name
        bp.add_url_rule(path, name, login_required(show), methods=["GET"])

    for path, label in NAV:  # one page per navigation entry, each behind the login
        logged_in_page(path, label)

    async def series(key: str) -> str:
        # the key only goes into a data attribute (escaped); the script reads the series
        return await page("series.html", "/library", key, series_key=key)

    bp.add_url_rule("/library/<key>", "series", login_required(series), methods=["GET"])

    return bp
