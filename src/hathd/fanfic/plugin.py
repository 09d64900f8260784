"""The fanfic subsystem as a daemon plugin (AutomatedFanfic: IMAP → FanFicFare → Calibre).

- ``enabled`` when ``[fanfic] enabled = true``.
- ``setup``: the ``fanfic`` store schema, the ``fanfic`` job kind (retry preset
  ``[fanfic] retry_preset``, default ``fanfic``), a one-at-a-time lane per FanFicFare site.
- ``services``: ``fanfic-imap`` (when ``[imap] host`` is set). Messages go through the
  daemon's notifier (:class:`hathd.notify.plugin.NotifyPlugin`, event kind ``fanfic``); a
  plugin built without one serves its own ``notify`` service (when ``[notify]`` has URLs).
- admin API: ``POST /api/v1/fanfic/stories`` ``{"urls": [...], "update_method": "force"}``
  (the method is optional) → ``{"created": [...],
  "existing": [...], "disabled": [...], "rejected": [{"url", "error"}]}``;
  ``GET /api/v1/fanfic/status``.
- CLI: ``hathd fanfic add [--update-method M] URL…`` and ``hathd fanfic import-config CONFIG.TOML``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from hathd.config import Config
from hathd.errors import PermanentError
from hathd.fanfic.calibre import Calibre
from hathd.fanfic.config import UPDATE_METHODS, FanficConfig
from hathd.fanfic.handler import KIND, FanficPipeline
from hathd.fanfic.imap import MIGRATIONS, ImapWatcher
from hathd.fanfic.stories import Story, identify
from hathd.fanfic.submit import StorySubmitter
from hathd.notify import Notifier
from hathd.notify.plugin import NotifyPlugin
from hathd.programs import Program, resolve
from hathd.runtime import BasePlugin, Runtime
from hathd.supervisor import ServiceSpec, to_plain

if TYPE_CHECKING:
    import asyncclick as click
    from quart import Blueprint

log = logging.getLogger(__name__)


@attrs.define
class FanficParts:
    """What ``setup`` builds, kept as :attr:`FanficPlugin.parts`."""

    pipeline: FanficPipeline
    submitter: StorySubmitter
    calibre: Calibre
    notifier: Notifier
    watcher: ImapWatcher | None = None
    serve_notifier: bool = False

    def statistics(self) -> dict[str, Any]:
        """Counters of every part, JSON-ready."""
        out: dict[str, Any] = {
            "jobs": to_plain(self.pipeline.statistics()),
            "calibre": to_plain(self.calibre.statistics()),
            "notify": to_plain(self.notifier.statistics()),
        }
        if self.watcher is not None:
            out["imap"] = to_plain(self.watcher.statistics())
        return out


def _site_domains() -> list[str]:
    from fanficfare import adapters

    return [str(s) for s in adapters.getSiteSections()]


async def submit_urls(
    parts: FanficParts, urls: Sequence[str], *, source: str, update_method: str | None = None
) -> dict[str, Any]:
    """Identify ``urls`` with FanFicFare and submit their stories; unknown URLs are listed as
    rejected (nothing else is lost). ``update_method`` (one of ``UPDATE_METHODS``) overrides
    the configured one for these jobs."""
    stories: list[Story] = []
    rejected: list[dict[str, str]] = []
    for url in urls:
        try:
            stories.append(await trio.to_thread.run_sync(identify, url))
        except PermanentError as exc:
            rejected.append({"url": url, "error": str(exc)})
    report = await parts.submitter.submit(stories, source=source, update_method=update_method)
    return {
        "created": list(report.created),
        "existing": list(report.existing),
        "disabled": list(report.disabled),
        "rejected": rejected,
    }


FANFICFARE_FIX = (
    "install FanFicFare into hathd's environment (`pip install FanFicFare` with hathd's "
    "pip), or set [fanfic] fanficfare to its full path"
)
CALIBREDB_FIX = (
    "install calibre (Debian package: calibre), or set [fanfic.calibre] calibredb to the "
    "path of calibredb, or leave [fanfic.calibre] library empty to skip Calibre"
)


def resolve_programs(cfg: FanficConfig) -> tuple[FanficConfig, list[Program]]:
    """Resolve FanFicFare (hathd's own environment first, then ``PATH``) and, when a Calibre
    library is set, calibredb (``PATH``); returns the configuration with the resolved argvs
    of the programs found, and every program the jobs need (found or not)."""
    fff = resolve(
        "fanficfare", cfg.fanficfare, fix=FANFICFARE_FIX, own_environment=True, needed_by=KIND
    )
    needed = [fff]
    if fff.argv is not None:
        cfg = attrs.evolve(cfg, fanficfare=list(fff.argv))
    if cfg.calibre.library:
        calibredb = resolve("calibredb", [cfg.calibre.calibredb], fix=CALIBREDB_FIX, needed_by=KIND)
        needed.append(calibredb)
        if calibredb.argv is not None:
            cfg = attrs.evolve(cfg, calibre=attrs.evolve(cfg.calibre, calibredb=calibredb.argv[0]))
    return cfg, needed


class FanficPlugin(BasePlugin):
    """Wires the fanfic subsystem into the daemon."""

    name = "fanfic"

    def __init__(self, notify: NotifyPlugin | None = None) -> None:
        self.parts: FanficParts | None = None
        self.notify = notify

    def enabled(self, config: Config) -> bool:
        """On when ``[fanfic] enabled = true``."""
        return config.fanfic.enabled

    async def setup(self, rt: Runtime) -> None:
        """Migrate the store, register the ``fanfic`` kind, declare per-site lanes.

        :raises RuntimeError: no engine is attached to the runtime.
        """
        if rt.engine is None:
            raise RuntimeError("the fanfic plugin needs the job engine")
        cfg = rt.config.fanfic
        await rt.store.migrate("fanfic", MIGRATIONS)
        shared = self.notify.notifier if self.notify is not None else None
        notifier = shared if shared is not None else Notifier(rt.config.notify)
        cfg, needed = resolve_programs(cfg)
        for program in needed:
            rt.programs.add(program)
        calibre = Calibre(cfg.calibre, config_dir=rt.paths.state_dir / "calibre")
        pipeline = FanficPipeline(
            cfg,
            calibre,
            notifier,
            presets=rt.engine.retry_presets(),
            programs=needed,
        )
        rt.engine.register(
            KIND, pipeline.handle, retry_preset=cfg.retry_preset, on_final=pipeline.on_final
        )
        submitter = StorySubmitter(rt.engine, cfg, notifier)
        for site in await trio.to_thread.run_sync(_site_domains):
            submitter.ensure_lane(site)
        watcher = ImapWatcher(rt.config.imap, rt.store, submitter) if rt.config.imap.host else None
        serve = shared is None and notifier.enabled
        self.parts = FanficParts(pipeline, submitter, calibre, notifier, watcher, serve)

    def _parts(self) -> FanficParts:
        if self.parts is None:
            raise RuntimeError("fanfic plugin used before setup()")
        return self.parts

    def services(self, rt: Runtime) -> Sequence[ServiceSpec]:
        """The IMAP watcher and the notification sender."""
        parts = self._parts()
        specs: list[ServiceSpec] = []
        if parts.serve_notifier:
            specs.append(ServiceSpec("notify", parts.notifier.serve, parts.notifier.statistics))
        if parts.watcher is not None:
            specs.append(ServiceSpec("fanfic-imap", parts.watcher.serve, parts.statistics))
        return specs

    def blueprint(self, rt: Runtime) -> Blueprint | None:
        """``POST /api/v1/fanfic/stories`` and ``GET /api/v1/fanfic/status``."""
        from quart import Blueprint

        from hathd.jsonbody import read_object

        bp = Blueprint("fanfic", __name__)
        parts = self._parts()

        @bp.post("/api/v1/fanfic/stories")
        async def add_stories() -> Any:
            """Queue story URLs: ``{"urls": [...], "update_method": "force"?}``."""
            body = await read_object()
            urls = body.get("urls")
            if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
                return {"error": 'expected {"urls": ["http://…", …]}'}, 400
            method = body.get("update_method")
            if method is not None and method not in UPDATE_METHODS:
                return {"error": f"update_method must be one of {', '.join(UPDATE_METHODS)}"}, 400
            return await submit_urls(parts, urls, source="api", update_method=method)

        @bp.get("/api/v1/fanfic/status")
        async def fanfic_status() -> Any:
            """Counters of the watcher, the jobs, calibredb and notifications."""
            return parts.statistics()

        return bp

    def cli(self) -> Sequence[click.Command]:
        """``hathd fanfic add URL…`` and ``hathd fanfic import-config FILE``."""
        import asyncclick as click

        from hathd.clictx import CliContext
        from hathd.fanfic.importer import convert_text, to_toml

        @click.group("fanfic")
        async def fanfic() -> None:
            """Fanfiction downloads into Calibre (AutomatedFanfic)."""

        @fanfic.command("add")
        @click.option(
            "--update-method",
            type=click.Choice(UPDATE_METHODS),
            help="Override [fanfic] update_method for these stories (force: rewrite the book).",
        )
        @click.argument("urls", nargs=-1, required=True)
        @click.pass_obj
        async def add(obj: CliContext, urls: tuple[str, ...], update_method: str | None) -> None:
            """Queue story URLs (any chapter URL of a story FanFicFare supports)."""
            body: dict[str, Any] = {"urls": list(urls)}
            if update_method:
                body["update_method"] = update_method
            async with obj.admin() as admin:
                reply = await admin.post("/api/v1/fanfic/stories", body)
            click.echo(json.dumps(reply, indent=2))
            if reply.get("rejected"):
                raise click.exceptions.Exit(1)

        @fanfic.command("import-config")
        @click.argument("path", type=click.Path(exists=True, dir_okay=False))
        async def import_config(path: str) -> None:
            """Print hathd TOML for an AutomatedFanfic config.toml."""
            try:
                imported = convert_text(await trio.Path(path).read_text(encoding="utf-8"))
            except (ValueError, OSError) as exc:
                click.echo(f"hathd: {exc}", err=True)
                raise click.exceptions.Exit(2) from None
            for note in imported.notes:
                click.echo(f"# note: {note}")
            click.echo(to_toml(imported.sections))

        return [fanfic]
