"""``hathd run``: the root nursery, signals, sd_notify, and the shutdown deadline.

The tree (docs/architecture.md draws it in full)::

    root nursery ─┬─ signals        SIGTERM/SIGINT → stop; SIGHUP → reload the configuration
                  ├─ watchdog       WATCHDOG=1 after a store round trip (a real liveness check)
                  ├─ admin          hypercorn: the admin app on the unix socket and TCP
                  └─ one scope per plugin (engine, notify, media-servers, hath, q4d, fanfic,
                     recipes, anime), each with its supervised services

Start-up: configuration → state directory → store → plugins' ``setup`` → admin (fail fast: a
busy port ends the daemon with a clear error) → plugins' services in order → ``READY=1``.
Shutdown (SIGTERM/SIGINT): ``STOPPING=1`` → ``rt.stopping`` set → plugin scopes cancelled in
reverse start order (ingesters and uploads first; the engine last: it starts no new job,
gives running jobs half the deadline to finish, then writes what is left back as ``queued``)
→ the admin server drains → the store flushes → exit 0; all of it inside
``daemon.shutdown_grace`` seconds, after which whatever is left is cancelled.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from hathd import config as config_mod
from hathd.admin.app import create_app
from hathd.anime.plugin import AnimePlugin
from hathd.config import Config
from hathd.engine.plugin import EnginePlugin
from hathd.errors import ConfigError
from hathd.fanfic.plugin import FanficPlugin
from hathd.gallery.plugin import GalleryPlugin
from hathd.hath.plugin import HathPlugin
from hathd.mediaserver.plugin import MediaServerPlugin
from hathd.metrics import JobMetrics
from hathd.notify.plugin import NotifyPlugin
from hathd.q4d.plugin import Q4dPlugin
from hathd.recipes.plugin import RecipesPlugin
from hathd.reload import plan_reload
from hathd.runtime import BasePlugin, Plugin, Runtime, default_state_dir, open_runtime
from hathd.sdnotify import sd_notify, watchdog_period
from hathd.supervisor import ServiceSpec
from hathd.web.setupcode import issue_setup_code

log = logging.getLogger(__name__)


def default_plugins() -> list[Plugin]:
    """The daemon's subsystems in start order, each built with what it needs from the others.

    This is the one place where parts meet: a plugin offers a part as a typed attribute (or
    a small Protocol it satisfies) and a plugin that needs it takes it as a constructor
    argument here. A new pipeline is one more line (docs/architecture.md, "Adding a
    pipeline"). Fresh objects on each call: a plugin keeps the parts it built in ``setup``.
    """
    engine = EnginePlugin()
    notify = NotifyPlugin()
    media = MediaServerPlugin()
    hath = HathPlugin()
    gallery = GalleryPlugin(hath=hath)
    hath.start_downloader = gallery.trigger
    q4d = Q4dPlugin()
    fanfic = FanficPlugin(notify=notify)
    recipes = RecipesPlugin()
    anime = AnimePlugin()
    return [engine, notify, media, hath, gallery, q4d, fanfic, recipes, anime]


def ensure_token(path: Path) -> str:
    """Read the admin bearer token at ``path`` (``~`` expanded), creating it (mode 0600) on
    first run.

    :raises OSError: the file cannot be created or read.
    """
    path = path.expanduser()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text(encoding="ascii").strip()
        if token:
            return token
        path.unlink()
        return ensure_token(path)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    return token


def resolve_state_dir(
    override: str | os.PathLike[str] | None, config: Config, environ: Mapping[str, str]
) -> Path:
    """``--state-dir``, else ``[daemon] state_dir``, else systemd's or the XDG default."""
    if override is not None:
        return Path(override).expanduser().absolute()
    if config.daemon.state_dir:
        return Path(config.daemon.state_dir).expanduser().absolute()
    return default_state_dir(dict(environ))


def default_config_path(environ: Mapping[str, str]) -> str | None:
    """``$CONFIGURATION_DIRECTORY/hathd.toml`` when systemd set that variable (the unit's
    ``ConfigurationDirectory=``, first entry) and the file exists; else ``None`` (built-in
    defaults). ``--config`` / ``$HATHD_CONFIG`` win over it."""
    directory = environ.get("CONFIGURATION_DIRECTORY", "").split(":")[0]
    if not directory:
        return None
    candidate = Path(directory) / "hathd.toml"
    return str(candidate) if candidate.is_file() else None


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


@attrs.define
class _Group:
    plugin: Plugin
    scope: trio.CancelScope
    done: trio.Event


class Daemon:
    """One running hathd: build with a loaded configuration, then ``await daemon.run()``.

    ``extra_services`` are supervised beside the plugins' (the test suite uses it to inject a
    service that crashes). ``environ`` defaults to ``os.environ``.
    """

    def __init__(
        self,
        config: Config,
        state_dir: Path,
        *,
        config_path: str | None = None,
        plugins: Sequence[Plugin] | None = None,
        extra_services: Sequence[ServiceSpec] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self._started_config = config
        self.state_dir = state_dir
        self.config_path = config_path
        self.plugins = list(default_plugins() if plugins is None else plugins)
        self.extra_services = list(extra_services)
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.stop_requested = trio.Event()
        self.rt: Runtime | None = None
        self.admin_urls: list[str] = []
        self._enabled: set[str] = set()

    def request_stop(self) -> None:
        """Begin the shutdown sequence (what SIGTERM does)."""
        self.stop_requested.set()

    async def run(
        self, *, task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until a stop is requested, then shut down within the deadline.

        ``task_status.started(rt)`` is called, and READY=1 sent, once every service started.

        :raises StateDirInUse: another hathd uses the state directory.
        :raises StoreError: the database cannot be opened or migrated.
        :raises ConfigError: a plugin's ``setup`` found the configuration unusable.
        :raises ExceptionGroup: wrapping the ``OSError`` when the admin socket or port cannot
            be bound (it comes out of the root nursery).
        """
        async with open_runtime(self.config, self.state_dir) as rt:
            self.rt = rt
            token_path = (
                Path(self.config.admin.token_file)
                if self.config.admin.token_file
                else rt.paths.token_file
            )
            token = await trio.to_thread.run_sync(ensure_token, token_path)
            setup_code = await issue_setup_code(rt.store, rt.paths.state_dir)
            if setup_code is not None:
                log.warning(
                    "no admin yet: claim this node in the web pages (/setup) from this host, "
                    "or from elsewhere with the setup code %s (also in %s)",
                    setup_code,
                    rt.paths.state_dir / "setup-code",
                )
            enabled = [p for p in self.plugins if p.enabled(self.config)]
            self._enabled = {p.name for p in enabled}
            for plugin in enabled:
                await plugin.setup(rt)
            app = create_app(
                rt,
                token,
                enabled,
                self.plugins,
                config_path=self.config_path,
                reload=partial(self._reload, rt),
                environ=self.environ,
            )
            async with trio.open_nursery() as root:
                root.start_soon(self._signals, rt)
                admin_stop = trio.Event()
                admin_done = trio.Event()
                await rt.supervisor.start(
                    root,
                    ServiceSpec(
                        "admin", partial(self._serve_admin, rt, app, admin_stop, admin_done)
                    ),
                    fail_fast=True,
                )
                job_metrics = JobMetrics(rt.bus)
                await rt.supervisor.start(
                    root, ServiceSpec("metrics", job_metrics.serve, job_metrics.statistics)
                )
                groups: list[_Group] = []
                for plugin in enabled:
                    specs = list(plugin.services(rt))
                    if not specs:
                        continue
                    group = _Group(plugin, trio.CancelScope(), trio.Event())
                    await root.start(self._run_group, rt, group, specs)
                    groups.append(group)
                if self.extra_services:
                    group = _Group(_ExtraServices(), trio.CancelScope(), trio.Event())
                    await root.start(self._run_group, rt, group, self.extra_services)
                    groups.append(group)
                period = watchdog_period(self.environ)
                if period is not None:
                    root.start_soon(self._watchdog, rt, period)
                names = ", ".join(r["name"] for r in rt.supervisor.statistics())
                sd_notify(
                    "READY=1",
                    f"STATUS=serving: {names}",
                    f"MAINPID={os.getpid()}",
                    environ=self.environ,
                )
                log.info("hathd ready in %s: %s", rt.paths.state_dir, names)
                task_status.started(rt)
                await self.stop_requested.wait()
                sd_notify("STOPPING=1", environ=self.environ)
                log.info("shutting down (deadline %.1f s)", self.config.daemon.shutdown_grace)
                rt.stopping.set()
                began = time.monotonic()
                with trio.move_on_after(self.config.daemon.shutdown_grace) as deadline:
                    for group in reversed(groups):
                        if group is groups[0] and group.plugin.name == "engine":
                            await self._drain_engine(rt)
                        group.scope.cancel()
                        await group.done.wait()
                    admin_stop.set()
                    await admin_done.wait()
                if deadline.cancelled_caught:
                    log.warning("shutdown deadline reached; cancelling what is left")
                log.info("stopped in %.2f s", time.monotonic() - began)
                root.cancel_scope.cancel()

    async def _drain_engine(self, rt: Runtime) -> None:
        """Give running jobs half the shutdown deadline to finish before the engine is
        cancelled (cancelled jobs go back to ``queued``)."""
        if rt.engine is None:
            return
        left = await rt.engine.drain(self.config.daemon.shutdown_grace / 2)
        if left:
            log.info("%d running job(s) will be written back as queued", left)

    async def _run_group(
        self,
        rt: Runtime,
        group: _Group,
        specs: Sequence[ServiceSpec],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            with group.scope:
                async with trio.open_nursery() as nursery:
                    for spec in specs:
                        await rt.supervisor.start(nursery, spec)
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            group.done.set()

    async def _serve_admin(
        self,
        rt: Runtime,
        app: Any,
        stop: trio.Event,
        done: trio.Event,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        socket_path = (
            Path(self.config.admin.socket) if self.config.admin.socket else rt.paths.socket
        )
        await trio.to_thread.run_sync(partial(socket_path.unlink, missing_ok=True))
        cfg = HypercornConfig()
        cfg.bind = [f"unix:{socket_path}", f"{self.config.admin.host}:{self.config.admin.port}"]
        cfg.accesslog = None
        cfg.errorlog = logging.getLogger("hypercorn.error")
        cfg.graceful_timeout = max(0.5, self.config.daemon.shutdown_grace / 4)
        try:
            async with trio.open_nursery() as nursery:
                old_umask = os.umask(0o177)
                try:
                    urls: list[str] = await nursery.start(
                        partial(serve, app, cfg, shutdown_trigger=stop.wait)
                    )
                finally:
                    os.umask(old_umask)
                await trio.to_thread.run_sync(os.chmod, socket_path, 0o600)
                self.admin_urls = urls
                tcp = [u for u in urls if not u.startswith("http://unix:")]
                await trio.to_thread.run_sync(
                    _write_private, rt.paths.state_dir / "admin.url", (tcp[0] if tcp else "") + "\n"
                )
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(partial(socket_path.unlink, missing_ok=True))
            done.set()

    async def _signals(self, rt: Runtime) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self._reload(rt)
                else:
                    log.info("received %s", signal.Signals(signum).name)
                    self.request_stop()

    async def _reload(self, rt: Runtime) -> None:
        sd_notify(
            "RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", environ=self.environ
        )
        try:
            new = await trio.to_thread.run_sync(
                partial(config_mod.load, self.config_path, self.environ)
            )
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            rt.bus.publish("system", "config.rejected", {"problems": exc.problems})
        else:
            plan = plan_reload(self._started_config, new)
            self.config = plan.config
            rt.config = plan.config
            rt.restart_pending = plan.restart_pending
            for plugin in self.plugins:
                if plugin.name not in self._enabled:
                    continue
                try:
                    plugin.reconfigure(rt, plan.config)
                except Exception:
                    log.exception("reload: %s could not apply the new configuration", plugin.name)
            log.info("configuration reloaded from %s", self.config_path or "(defaults)")
            if plan.restart_pending:
                log.warning(
                    "reload: restart pending for %s (changed in the file; the running values "
                    "stay in force until hathd restarts)",
                    ", ".join(plan.restart_pending),
                )
            rt.bus.publish(
                "system",
                "config.reloaded",
                {"path": self.config_path, "restart_pending": plan.restart_pending},
            )
        sd_notify("READY=1", environ=self.environ)

    async def _watchdog(self, rt: Runtime, period: float) -> None:
        """Send WATCHDOG=1 every ``period`` seconds while a store round trip (the writer
        thread and this event loop both alive) answers within ``period``; a hung probe is not
        repeated until it answers, and no ping goes out meanwhile, so systemd restarts us."""
        answered = trio.Event()
        pending = False

        async def probe() -> None:
            nonlocal pending
            await rt.store.ping()  # shielded inside the store: runs to its end
            pending = False
            answered.set()

        async with trio.open_nursery() as nursery:
            while True:
                if not pending:
                    pending = True
                    answered = trio.Event()
                    nursery.start_soon(probe)
                with trio.move_on_after(period):
                    await answered.wait()
                if answered.is_set():
                    sd_notify("WATCHDOG=1", environ=self.environ)
                else:
                    log.error("watchdog: the store did not answer within %.1f s", period)
                await trio.sleep(period)


class _ExtraServices(BasePlugin):
    name = "extras"


def configure_logging(level: str) -> None:
    """Log to stderr (journald captures it) at ``level``."""
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
