"""The admin app (quart-trio): health, status, metrics, configuration and the event WebSocket.

Routes of the core (plugins add their own through blueprints):

- ``GET /healthz`` — ``200 {"status": "ok"}``, or ``503`` while a service waits for a restart.
  It needs no token: it tells nothing but up or down.
- ``GET /api/v1/status`` — version, pid, uptime (s), state directory, every service's state,
  restarts, last error and ``statistics()``, plus the store's and the bus's counters.
- ``/api/v1/config`` — the configuration (see :mod:`hathd.web.config_api`).
- ``GET /metrics`` — Prometheus text format (see :mod:`hathd.admin.metrics`).
- ``WS /api/v1/ws?rooms=jobs,progress`` — events of the chosen rooms (default: all) as JSON
  text frames, one :meth:`hathd.events.Event.to_json` each; a ``lagged`` event ends a stream
  that fell behind. The first frame is a ``hello`` with the current service records.

Authentication and the configuration routes are :mod:`hathd.web`'s: requests over the unix
socket are trusted (the socket's file mode, 0600 in a 0700 state directory, is the access
control); a TCP request carries ``Authorization: Bearer <key>`` (an API key; the ``admin.token``
file's token is one admin key; a WebSocket may pass ``?token=<key>``) or a session cookie of
the web pages. See docs/web.md.

Request bodies are read by :mod:`hathd.jsonbody`: the body of every ``POST``/``PUT``/
``PATCH``/``DELETE`` request is read and checked as strict JSON before its route runs (also on
routes that take no body), and a malformed one is answered ``400 {"error", "field"}``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import trio
from quart import Response, websocket
from quart.wrappers.base import ClientDisconnectedError
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

import hathd
from hathd.admin.metrics import render_metrics
from hathd.errors import UnencodableText
from hathd.events import ROOMS
from hathd.jsonbody import MalformedBody, check_body
from hathd.runtime import Plugin, Runtime
from hathd.supervisor import to_plain
from hathd.web import install as install_web
from hathd.web.auth import is_trusted_scope, public
from hathd.web.config_api import Reload

__all__ = ["create_app", "is_trusted_scope"]


def create_app(
    rt: Runtime,
    token: str,
    plugins: Iterable[Plugin] = (),
    available: Iterable[Plugin] = (),
    *,
    config_path: str | None = None,
    reload: Reload | None = None,
    environ: Mapping[str, str] | None = None,
) -> QuartTrio:
    """Build the admin app for ``rt``; ``token`` (the ``admin.token`` file's) is the node's
    admin API key. ``config_path``, ``reload`` and ``environ`` serve the configuration API
    (:func:`hathd.web.install`).

    Each enabled plugin's ``blueprint(rt)`` is registered with no URL prefix. ``available``
    lists every loaded plugin, enabled or not, for the ``subsystems`` part of the status: a
    subsystem that is off says so, with the reason its plugin gives (``off_reason(config)``).
    """
    plugins = list(plugins)
    available = list(available) or plugins
    app = QuartTrio("hathd.admin")
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024
    started = time.time()
    install_web(app, rt, token, config_path=config_path, reload=reload, environ=environ)

    @app.before_request
    async def read_body() -> None:
        # after the credentials check of hathd.web (registered first)
        await check_body()

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        return Response(
            json.dumps({"error": exc.description or exc.name, "code": _code(exc.code)}),
            status=exc.code or 500,
            mimetype="application/json",
        )

    @app.errorhandler(MalformedBody)
    async def malformed_body(exc: MalformedBody) -> Response:
        return Response(
            json.dumps({"error": str(exc), "code": exc.code, "field": exc.field}),
            status=400,
            mimetype="application/json",
        )

    @app.errorhandler(UnencodableText)
    async def unencodable(exc: UnencodableText) -> Response:
        # the body reader refuses lone surrogates first; this covers text from anywhere else
        return Response(
            json.dumps({"error": f"body: {exc}", "code": exc.code, "field": "body"}),
            status=400,
            mimetype="application/json",
        )

    @app.errorhandler(ClientDisconnectedError)
    async def ws_gone(_exc: ClientDisconnectedError) -> tuple[str, int]:
        return "", 204

    @app.get("/healthz")
    @public
    async def healthz() -> tuple[dict[str, Any], int]:
        healthy = rt.supervisor.all_healthy()
        return {"status": "ok" if healthy else "degraded"}, 200 if healthy else 503

    @app.get("/api/v1/status")
    async def status() -> dict[str, Any]:
        return {
            "version": hathd.__version__,
            "pid": os.getpid(),
            "uptime": round(time.time() - started, 3),
            "state_dir": str(rt.paths.state_dir),
            "services": rt.supervisor.statistics(),
            "subsystems": [_subsystem(p, rt) for p in available],
            "restart_pending": list(rt.restart_pending),
            "programs": rt.programs.to_plain(),
            "store": to_plain(rt.store.statistics()),
            "bus": to_plain(rt.bus.statistics()),
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = render_metrics(rt)
        return Response(body, status=200, content_type=content_type)

    @app.websocket("/api/v1/ws")
    async def ws() -> Response | None:
        wanted = websocket.args.get("rooms")
        rooms = [r.strip() for r in wanted.split(",") if r.strip()] if wanted else ["*"]
        unknown = sorted(set(rooms) - ROOMS - {"*"})
        if unknown:
            # refused before the upgrade: the client sees an HTTP 400 with the reason
            known = ", ".join(sorted(ROOMS))
            return Response(
                json.dumps({"error": f"rooms: unknown {', '.join(unknown)}; known: {known}, or *"}),
                status=400,
                mimetype="application/json",
            )
        async with rt.bus.subscribe(rooms) as sub:
            await websocket.send(
                json.dumps(
                    {
                        "seq": 0,
                        "time": time.time(),
                        "room": "system",
                        "type": "hello",
                        "data": {"rooms": rooms, "services": rt.supervisor.statistics()},
                    }
                )
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_drain_client, nursery.cancel_scope)
                async for event in sub:
                    await websocket.send(json.dumps(event.to_json()))
                nursery.cancel_scope.cancel()
        return None

    for plugin in plugins:
        blueprint = plugin.blueprint(rt)
        if blueprint is not None:
            app.register_blueprint(blueprint)
    return app


def _code(status: int | None) -> str:
    return {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        status or 500, "http_error"
    )


def _subsystem(plugin: Plugin, rt: Runtime) -> dict[str, Any]:
    enabled = plugin.enabled(rt.config)
    reason = None
    if not enabled:
        reason = plugin.off_reason(rt.config) or "not enabled in the configuration"
    return {"name": plugin.name, "enabled": enabled, "reason": reason}


async def _drain_client(scope: trio.CancelScope) -> None:
    """Read (and ignore) client frames so a close from the client ends the stream."""
    try:
        while True:
            await websocket.receive()
    except ClientDisconnectedError:
        scope.cancel()
