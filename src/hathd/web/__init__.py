"""The web side of the admin app: accounts and sessions, API keys, users and roles, requests,
the audit trail, the configuration API, security headers and the pages.

:func:`install` adds all of it to an admin app built by :func:`hathd.admin.app.create_app`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import cast

from quart import Blueprint
from quart_trio import QuartTrio

from hathd.runtime import Runtime
from hathd.web import audit, auth, auth_api, config_api, requests, security, users_api


def install(
    app: QuartTrio,
    rt: Runtime,
    token: str,
    *,
    config_path: str | os.PathLike[str] | None = None,
    reload: config_api.Reload | None = None,
    environ: Mapping[str, str] | None = None,
) -> auth.WebAuth:
    """Install the auth layer, security headers and the web routes on ``app``.

    ``token`` is the ``admin.token`` file's token: it becomes the node's admin API key.
    ``config_path`` is the TOML file the configuration API edits (None: hathd runs on
    defaults and the API refuses changes); ``reload`` applies a written file (SIGHUP's work);
    ``environ`` holds the ``HATHD_*`` overrides a new file is validated with (default
    ``os.environ``).
    Returns the :class:`hathd.web.auth.WebAuth` state (also at ``app.extensions``).
    """
    state = auth.WebAuth(store=rt.store, token=token, state_dir=rt.paths.state_dir)
    auth.install(app, state)
    audit.install(app, rt, state.clock)
    security.install(app)
    app.register_blueprint(auth_api.blueprint(state))
    app.register_blueprint(users_api.blueprint(state))
    app.register_blueprint(requests.blueprint(state))
    app.register_blueprint(audit.blueprint(rt.store))
    files = config_api.ConfigFiles(
        path=Path(config_path) if config_path is not None else None,
        backups=rt.paths.state_dir / "config-backups",
        reload=reload,
        environ=dict(os.environ if environ is None else environ),
    )
    app.register_blueprint(config_api.blueprint(rt, files))
    try:
        pages = importlib.import_module("hathd.web.pages")
    except ModuleNotFoundError as exc:
        if exc.name != "hathd.web.pages":
            raise
    else:
        make = cast(Callable[[Runtime], Blueprint], pages.blueprint)
        app.register_blueprint(make(rt))
    return state
