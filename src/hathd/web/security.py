"""Security headers on every response of the admin app.

- ``Content-Security-Policy``: scripts, styles and connections from the node itself only, no
  inline script or style, no plugins, not framed (``frame-ancestors 'none'``; CSP Level 3).
- ``X-Frame-Options: DENY`` for browsers without ``frame-ancestors`` (RFC 7034).
- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``.
- ``Cache-Control: no-store`` on everything but ``/static/`` files, so no authenticated page
  or API answer is kept by a browser or proxy cache.
"""

from __future__ import annotations

from typing import Final

from quart import Response, request
from quart_trio import QuartTrio

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""The Content-Security-Policy value."""


def apply_headers(response: Response, path: str) -> Response:
    """Set the security headers on ``response`` (for request ``path``) and return it."""
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    if not path.startswith("/static/"):
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"
    return response


def install(app: QuartTrio) -> None:
    """Add the headers to every HTTP response of ``app``."""

    @app.after_request
    async def add_headers(response: Response) -> Response:
        return apply_headers(response, request.path)
